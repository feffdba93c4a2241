"""The LLM endpoint's pure parts (answers, the extractor's reading of an answer,
settings) as tables, and the client against the fake OpenAI-compatible server
(tests/support/fake_llm.py) and a closed port."""

from __future__ import annotations

import json
import socket

import pytest

from torua.protocol.errors import ToruaError
from torua.rag.answers import answer_prompt, citations
from torua.rag.corpus import CorpusSettings
from torua.rag.extraction import Triple
from torua.rag.llm_extractor import SYSTEM as EXTRACT_SYSTEM, extraction_of
from torua.rag.openai_compat import OpenAiCompatible, first_json_object
from tests.support.fake_llm import DIM, FakeLlm


@pytest.mark.parametrize(
    "answer, ids, expected",
    [
        ("", ["a"], []),
        ("[a] and [b]", ["a", "b"], ["a", "b"]),
        ("[b] then [a] then [b]", ["a", "b"], ["b", "a"]),  # the order it first cites them
        ("[x] is not evidence", ["a"], []),
        ("[ a ] spaces, [a/b c] no", ["a", "a/b c"], []),  # an id has no spaces, as chunk ids
        ("see [c/doc 1/ff]", ["c/doc 1/ff"], []),
    ],
)
def test_citations_are_the_evidence_ids_an_answer_names_in_brackets(answer, ids, expected):
    assert citations(answer, ids) == expected


def test_the_answer_prompt_gives_each_passage_with_its_id():
    prompt = answer_prompt("Why?", [{"id": "c/a/1", "text": "One."}, {"id": "c/b/2", "text": "Two." * 1000}])
    assert prompt.startswith("Passages:\n\n[c/a/1] One.\n\n[c/b/2] Two.") and prompt.endswith("\n\nQuestion: Why?")
    assert len(prompt) < 2100 + 100  # a passage is cut at 2000 characters


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
        ('[1, 2] then {"a": 1}', {"a": 1}),
        ('{broken {"a": 1}', {"a": 1}),
        ("none", None),
        ("{", None),
    ],
)
def test_the_first_json_object_of_an_answer(answer, expected):
    assert first_json_object(answer) == expected


TEXT = "Ada Lovelace met Charles Babbage. Babbage lived in London."
SENTENCES = [(0, 33), (34, 58)]


@pytest.mark.parametrize(
    "answer, mentions, triples, pairs",
    [
        ("no JSON", [], [], []),
        ('{"entities": "nope", "relations": 7}', [], [], []),
        # types outside ENTITY_TYPES, empty and repeated names are left out; case is the text's
        ('{"entities": [{"name": "ada lovelace", "type": "person"}, {"name": "1815", "type": "DATE"}, {"name": "", "type": "ORG"},'
         ' {"name": "Ada Lovelace", "type": "PERSON"}, "junk"]}', [("Ada Lovelace", "PERSON", 0, 12)], [], []),
        # two names in one sentence co-occur; one not in the text has no offsets and co-occurs with none
        ('{"entities": [{"name": "Ada Lovelace", "type": "PERSON"}, {"name": "Charles Babbage", "type": "PERSON"}, {"name": "London", "type": "GPE"},'
         ' {"name": "Paris", "type": "GPE"}], "relations": [{"source": "Charles Babbage", "predicate": " Lived  In ", "target": "london"},'
         ' {"source": "Ada Lovelace", "predicate": "met", "target": "Nobody"}, {"source": "London", "predicate": "", "target": "Paris"},'
         ' {"source": "London", "predicate": "is", "target": "London"}]}',
         [("Ada Lovelace", "PERSON", 0, 12), ("Charles Babbage", "PERSON", 17, 32), ("London", "GPE", 51, 57), ("Paris", "GPE", -1, -1)],
         [Triple(1, "lived in", 2)], [(0, 1)]),
    ],
)
def test_an_llm_answer_read_as_an_extraction(answer, mentions, triples, pairs):
    e = extraction_of(answer, TEXT, SENTENCES)
    assert [(m.text, m.type, m.start, m.end) for m in e.mentions] == mentions
    assert list(e.offsets) == [(s, t) for _, _, s, t in mentions]
    assert list(e.triples) == triples and list(e.cooccurrences) == pairs


@pytest.mark.parametrize(
    "given, error",
    [
        ({}, None),
        ({"llm_url": "http://h/v1", "llm_model": "m"}, None),
        ({"extractor": "llm", "llm_url": "https://h/v1", "llm_model": "m"}, None),
        ({"embedder": "openai", "llm_url": "http://h/v1", "embedding_model": "e", "dim": 768}, None),
        ({"extractor": "llm"}, "need llm_url, llm_model"),
        ({"extractor": "llm", "llm_url": "http://h"}, "need llm_model"),
        ({"llm_model": "m"}, "need llm_url"),
        ({"embedder": "openai", "llm_url": "http://h"}, "need embedding_model"),
        ({"embedder": "openai", "llm_url": "http://h", "embedding_model": "e", "dim": 5000}, "dim must be 1..4096"),
        ({"embedder": "openai", "llm_url": "http://h", "embedding_model": "e", "dim": True}, "dim must be"),
        ({"dim": 768}, "makes 384-d vectors, not 768"),
        ({"llm_url": "file:///etc/passwd", "llm_model": "m"}, "http(s) URL"),
        ({"llm_url": 7}, "llm_url must be text"),
        ({"llm_model": "m" * 501, "llm_url": "http://h"}, "at most 500"),
        ({"api_key": "secret"}, "unknown corpus setting(s) api_key"),
    ],
)
def test_corpus_settings_for_an_llm_endpoint(given, error):
    if error is None:
        assert CorpusSettings.of(given).properties()["llm_url"] == given.get("llm_url", "")
        return
    with pytest.raises(ToruaError) as refused:
        CorpusSettings.of(given)
    assert refused.value.code == "bad_request" and error in refused.value.message, refused.value.message


def test_the_client_against_an_openai_compatible_server():
    with FakeLlm() as llm:
        client = OpenAiCompatible(llm.url)
        vectors = client.embeddings("e", ["one two", "three"])
        assert len(vectors) == 2 and all(len(v) == DIM for v in vectors) and sum(vectors[0]) == 2.0
        graph = first_json_object(client.chat("m", EXTRACT_SYSTEM, "Ada Lovelace met Charles Babbage."))
        assert [e["name"] for e in graph["entities"]] == ["Ada Lovelace", "Charles Babbage"]
        with pytest.raises(ToruaError) as broken:
            client.chat("broken", "s", "u")
        assert broken.value.code == "unavailable" and "HTTP 500" in broken.value.message and "the model is broken" in broken.value.message
        with pytest.raises(ToruaError) as missing:
            OpenAiCompatible(llm.url + "/nowhere").chat("m", "s", "u")
        assert missing.value.code == "unavailable" and "HTTP 404" in missing.value.message


def test_an_endpoint_that_does_not_answer_is_unavailable_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ToruaError) as refused:
            OpenAiCompatible(f"http://127.0.0.1:{port}/v1", timeout=5).embeddings("e", ["x"])
    assert refused.value.code == "unavailable" and f"127.0.0.1:{port}/v1/embeddings does not answer" in refused.value.message
    json.dumps(refused.value.message)  # a plain message, fit for a reply
