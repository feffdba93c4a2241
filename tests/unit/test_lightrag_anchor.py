"""The pure parts of the LightRAG anchor (torua/bench/lightrag_anchor.py): the fake
LLM's answers in LightRAG 1.5.7's formats, the whitespace tokenizer, and chunks to
ranked documents. None of them needs lightrag installed."""

from __future__ import annotations

import copy
import json
import threading

from torua.bench import lightrag_anchor as anchor
from torua.rag import evaluation
from torua.rag.extraction import Extraction, Mention, Triple
from torua.rag.pipeline import COOCCURS

D = anchor.TUPLE
TEXT = "Belgium borders France. The capital of Belgium is Brussels."
SENTENCES = [(0, 23), (24, 59)]
FOUND = Extraction(
    mentions=(Mention("Belgium", "GPE", 0, 1), Mention("France", "GPE", 2, 3), Mention("Belgium", "GPE", 7, 8), Mention("Brussels", "GPE", 9, 10)),
    offsets=((0, 7), (16, 22), (39, 46), (50, 58)),
    triples=(Triple(0, "border", 1),),
    cooccurrences=((0, 1), (2, 3)),
)


def rows(answer: str) -> list[list[str]]:
    return [line.split(D) for line in answer.splitlines()]


def test_extraction_records_are_lightrag_rows():
    answer = anchor.extraction_records(TEXT, FOUND, SENTENCES)
    assert answer.splitlines()[-1] == anchor.COMPLETE
    assert rows(answer)[:-1] == [
        ["entity", "Belgium", "GPE", "Belgium borders France. The capital of Belgium is Brussels."],
        ["entity", "France", "GPE", "Belgium borders France."],
        ["entity", "Brussels", "GPE", "The capital of Belgium is Brussels."],
        ["relation", "Belgium", "France", "border", "Belgium borders France."],
        ["relation", "Belgium", "France", COOCCURS, "Belgium borders France."],
        ["relation", "Belgium", "Brussels", COOCCURS, "The capital of Belgium is Brussels."],
    ]
    entities = [r for r in rows(answer) if r[0] == "entity"]
    relations = [r for r in rows(answer) if r[0] == "relation"]
    assert all(len(r) == 4 for r in entities) and all(len(r) == 5 for r in relations)


def test_extraction_records_keep_fields_on_one_line_and_drop_self_relations():
    text = "A<|#|>B\nco met A<|#|>B."
    found = Extraction(
        mentions=(Mention("A<|#|>B\nco", "ORG", 0, 1), Mention("A<|#|>B", "ORG", 3, 4)),
        offsets=((0, 10), (15, 22)),
        triples=(),
        cooccurrences=((0, 1),),
    )
    answer = anchor.extraction_records(text, found, [(0, len(text))])
    assert rows(answer)[0] == ["entity", "A B co", "ORG", "A B co met A B."]
    assert rows(answer)[2] == ["relation", "A B co", "A B", COOCCURS, "A B co met A B."]
    same = Extraction(mentions=(Mention("A", "ORG", 0, 1), Mention("A", "ORG", 2, 3)), offsets=((0, 1), (4, 5)), triples=(Triple(0, "see", 1),), cooccurrences=((0, 1),))
    assert anchor.extraction_records("A saw A.", same, [(0, 8)]) == f"entity{D}A{D}ORG{D}A saw A.\n{anchor.COMPLETE}"
    assert anchor.extraction_records("", Extraction((), (), (), ()), []) == anchor.COMPLETE


def test_prompts_are_told_apart_and_their_input_cut_out():
    extract = f"---Task---\n{anchor.MARKERS['extract'][1]}\n\n{anchor.INPUT_OPEN}Paris is in France.\n```\nstill text{anchor.INPUT_CLOSE}\n"
    assert anchor.prompt_kind(extract) == "extract"
    assert anchor.between(extract, anchor.INPUT_OPEN, anchor.INPUT_CLOSE) == "Paris is in France.\n```\nstill text"
    keywords = f"---Role---\n{anchor.MARKERS['keywords'][1]}, ...\n{anchor.QUERY_OPEN}Where is Paris?{anchor.QUERY_CLOSE}\nOutput:"
    assert anchor.prompt_kind(keywords) == "keywords"
    assert anchor.between(keywords, anchor.QUERY_OPEN, anchor.QUERY_CLOSE) == "Where is Paris?"
    assert anchor.prompt_kind(f"---Task---\n{anchor.MARKERS['continue'][1]} entities") == "continue"
    assert anchor.prompt_kind(f"Your task is to {anchor.MARKERS['summary'][1]} into one.") == "summary"
    assert anchor.prompt_kind("---Role---\nAnswer the question.") == "other"
    assert anchor.between("no markers", anchor.INPUT_OPEN, anchor.INPUT_CLOSE) == ""


def test_check_prompts_wants_the_markers_slots_and_delimiters():
    prompts = {key: f"... {marker} ..." for key, marker in anchor.MARKERS.values()}
    for key, slot in anchor.SLOTS.items():
        prompts[key] += slot
    prompts.update(DEFAULT_TUPLE_DELIMITER=anchor.TUPLE, DEFAULT_COMPLETION_DELIMITER=anchor.COMPLETE)
    anchor.check_prompts(prompts)
    changed = {**prompts, "keywords_extraction": "You extract keywords. Query: {query}"}
    try:
        anchor.check_prompts(changed)
    except ValueError as exc:
        assert "keywords_extraction" in str(exc) and anchor.LIGHTRAG_VERSION in str(exc)
    else:
        raise AssertionError("a changed template must be refused")


def test_keywords_json():
    answer = json.loads(anchor.keywords_json(["Republic of Macedonia", "Greece", "Greece"], ["capital", "country", "Republic", "Greece", "capital"], ["borders"]))
    assert answer == {"high_level_keywords": ["capital", "country"], "low_level_keywords": ["Republic of Macedonia", "Greece"]}
    assert json.loads(anchor.keywords_json([], ["", "Zambian kwacha"], [])) == {"high_level_keywords": ["Zambian kwacha"], "low_level_keywords": []}
    assert json.loads(anchor.keywords_json(["Zambia"], ["Zambia"], ["people", "Zambia"]))["high_level_keywords"] == ["people"]
    assert anchor.phrase([("the", "DET"), ("Zambian", "ADJ"), ("kwacha", "NOUN")]) == "Zambian kwacha"
    assert anchor.phrase([("What", "PRON")]) == ""


def test_summary_of_the_descriptions_listed():
    listed = "\n".join(json.dumps({"Description": d}) for d in ["Euro is used in France.", "Euro is used in Spain.", "Euro is used in France."])
    prompt = f"---Input---\nEntity Name: Euro\n\n{anchor.LIST_OPEN}{listed}{anchor.LIST_CLOSE}\n"
    assert anchor.summary_of(prompt) == "Euro is used in France. Euro is used in Spain."
    long = json.dumps({"Description": "x" * (2 * anchor.SUMMARY_CHARS)})
    assert len(anchor.summary_of(f"{anchor.LIST_OPEN}{long}{anchor.LIST_CLOSE}")) == anchor.SUMMARY_CHARS
    assert anchor.summary_of("nothing listed") == "nothing listed"


class Extractor:
    """What the fake LLM reads of `SpacyExtractor`, answering `FOUND` for `TEXT`."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def extract(self, texts):
        self.texts.extend(texts)
        return [FOUND]

    def sentence_spans(self, text):
        return SENTENCES


async def test_fake_llm_answers_each_kind():
    extractor = Extractor()
    llm = anchor.FakeLLM(extractor, nlp=None)
    extract = f"{anchor.MARKERS['extract'][1]}\n{anchor.INPUT_OPEN}{TEXT}{anchor.INPUT_CLOSE}\n"
    assert await llm(extract, system_prompt="---Role---", history_messages=[]) == anchor.extraction_records(TEXT, FOUND, SENTENCES)
    assert extractor.texts == [TEXT]
    assert await llm(anchor.MARKERS["continue"][1], history_messages=[{"role": "user", "content": extract}]) == anchor.COMPLETE
    other = "---Role---\n" + "y" * 500
    assert await llm(other, response_format=None) == other[: anchor.OTHER_CHARS]
    assert llm.calls == {"extract": 1, "continue": 1, "other": 1}
    assert copy.deepcopy(llm) is llm


def test_whitespace_tokens_round_trip():
    tokens = anchor.WhitespaceTokens()
    ids = tokens.encode("The capital of  Belgium\nis Brussels.")
    assert len(ids) == 6 and tokens.decode(ids) == "The capital of Belgium is Brussels."
    assert tokens.encode("Belgium Belgium") == [ids[3], ids[3]]
    assert tokens.decode(ids[2:4]) == "of Belgium"
    assert tokens.encode("") == [] and tokens.decode([]) == ""
    assert copy.deepcopy(tokens) is tokens


def test_whitespace_tokens_in_threads_agree():
    tokens = anchor.WhitespaceTokens()
    texts = [" ".join(f"w{(i * 7 + j) % 300}" for j in range(200)) for i in range(16)]
    out: dict[int, list[int]] = {}

    def encode(i: int) -> None:
        out[i] = tokens.encode(texts[i])

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(tokens.decode(out[i]) == texts[i] for i in range(len(texts)))
    assert len(set(tokens.encode(" ".join(f"w{k}" for k in range(300))))) == 300


def test_chunks_become_ranked_documents():
    assert anchor.file_path_of("people/ZMB") == "people__ZMB"
    document_of = {"people/ZMB-chunk-000": "people/ZMB", "people__MWI": "people/MWI", "city__ZMB": "city/ZMB"}
    chunks = [
        {"chunk_id": "people/ZMB-chunk-000", "file_path": "people__ZMB"},
        {"chunk_id": "x-chunk-001", "file_path": "people__MWI"},  # known by its file path only
        {"chunk_id": "people/ZMB-chunk-000", "file_path": "people__ZMB"},
        {"chunk_id": "", "file_path": "geo__ZMB"},  # known by neither: its file path stands
        {"chunk_id": "y", "file_path": "city__ZMB"},
    ]
    docs = anchor.chunk_documents(chunks, document_of)
    assert docs == ["people/ZMB", "people/MWI", "people/ZMB", "geo__ZMB", "city/ZMB"]
    assert evaluation.documents_ranked(docs) == ["people/ZMB", "people/MWI", "geo__ZMB", "city/ZMB"]
    assert evaluation.question_scores(docs, ["people/ZMB", "city/ZMB"]) == {"both@5": 1.0, "both@10": 1.0, "recall@10": 1.0, "rr": 1.0}
    eleven = [{"chunk_id": f"c{i}", "file_path": f"d{i}"} for i in range(11)]
    assert evaluation.question_scores(anchor.chunk_documents(eleven, {}), ["d3", "d10"]) == {"both@5": 0.0, "both@10": 0.0, "recall@10": 0.5, "rr": 0.25}


def test_table_is_torua_rag_eval_s():
    assert anchor.p50_ms([0.003, 0.001, 0.002, 0.004]) == 3.0 and anchor.p50_ms([]) == 0.0
    lines = anchor.table({"naive": {"both@5": 0.5, "both@10": 0.75, "recall@10": 0.875, "rr": 0.6, "p50_ms": 12.34}}, 185, "test")
    assert lines[0].startswith("lightrag 1.5.7: 185 questions (test half of countries-multihop-v1.json)")
    assert lines[1:] == [
        "mode      both@5  both@10  recall@10    MRR   p50 ms",
        "naive      0.500    0.750      0.875  0.600     12.3",
    ]


def test_without_lightrag_main_says_how_to_install(monkeypatch, capsys):
    real = anchor.importlib.util.find_spec
    monkeypatch.setattr(anchor.importlib.util, "find_spec", lambda name, *a: None if name == "lightrag" else real(name, *a))
    assert anchor.main(["--half", "test", "--limit", "1"]) == 2
    assert "pip install 'torua[lightrag]'" in capsys.readouterr().err
