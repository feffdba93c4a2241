"""The pure parts of the GraphRAG pipeline: chunking, extraction rules, entity
resolution (torua/rag/chunking.py, extraction.py, resolution.py), by tables of cases."""

from __future__ import annotations

import re

import pytest

from torua.rag.chunking import ChunkSettings, chunk_text, text_hash
from torua.rag.extraction import Mention, Token, Triple, cooccurrences, kept, triples
from torua.rag.resolution import Entity, Resolver, entity_id, normalise


def words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def sentences(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"[^.]+\.?", text)]


DOC = " ".join(f"Sentence {i} has exactly six words." for i in range(10))  # 10 sentences of 6 tokens


@pytest.mark.parametrize("size, overlap", [(16, 0), (16, 6), (20, 8), (30, 12), (60, 30)])
def test_chunks_hold_whole_sentences_within_the_size_and_overlap_by_whole_sentences(size, overlap):
    chunks = chunk_text(DOC, sentences(DOC), words, ChunkSettings(size, overlap))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == DOC[c.start : c.end] and c.hash == text_hash(c.text)
        assert len(words(c.text)) == c.tokens <= size
        assert c.text.startswith("Sentence") and c.text.endswith(".")  # whole sentences
    covered = set()
    for c in chunks:
        covered |= {s for s in sentences(DOC) if c.start <= s[0] + 1 and s[1] <= c.end}
    assert len(covered) == 10  # every sentence is in a chunk
    for a, b in zip(chunks, chunks[1:]):
        shared = max(0, a.end - b.start)
        assert b.start > a.start and b.end > a.end
        assert len(words(DOC[b.start : b.start + shared])) <= overlap  # the overlap is at most what was asked
        if overlap >= 6:
            assert shared > 0  # a sentence fits in the overlap: it is repeated
        else:
            assert shared <= 0


def test_a_sentence_longer_than_a_chunk_is_cut_at_token_boundaries():
    text = "Short one. " + " ".join(f"w{i}" for i in range(50)) + ". End here."
    chunks = chunk_text(text, sentences(text), words, ChunkSettings(16, 4))
    assert all(c.tokens <= 16 and c.text == text[c.start : c.end] for c in chunks)
    assert " ".join(c.text for c in chunks).count("w49") >= 1
    joined = set(w for c in chunks for w in c.text.split())
    assert {f"w{i}" for i in range(49)} <= joined  # nothing lost


def test_blank_and_empty_text_give_no_chunks():
    assert chunk_text("", [], words, ChunkSettings()) == []
    assert chunk_text("   \n ", [(0, 5)], words, ChunkSettings()) == []


def test_an_edit_changes_only_the_chunks_around_it():
    before = chunk_text(DOC, sentences(DOC), words, ChunkSettings(16, 0))
    edited = DOC.replace("Sentence 9 has exactly six words.", "Sentence 9 now has seven words here.")
    after = chunk_text(edited, sentences(edited), words, ChunkSettings(16, 0))
    assert [c.hash for c in before[:-1]] == [c.hash for c in after[:-1]]
    assert before[-1].hash != after[-1].hash


@pytest.mark.parametrize(
    "settings, error",
    [
        (ChunkSettings(8, 0), "chunk_tokens must be between 16 and 254"),
        (ChunkSettings(255, 0), "chunk_tokens must be between 16 and 254"),
        (ChunkSettings(100, 51), "overlap_tokens must be between 0 and half of chunk_tokens (50)"),
        (ChunkSettings(100, -1), "overlap_tokens"),
        (ChunkSettings("100", 0), "chunk_tokens"),  # type: ignore[arg-type]
    ],
)
def test_chunk_settings_out_of_range_are_refused(settings, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        settings.check(256)


# ---------------------------------------------------------------- extraction rules


def parse(*rows: tuple[str, str, int, str], sentence: int = 0) -> list[Token]:
    """Tokens from (text, dep, head, pos) rows; lemma = lower-cased text."""
    return [Token(text, text.lower(), dep, head, pos, sentence) for text, dep, head, pos in rows]


# "Paris is the capital of France and Spain."
CAPITAL = parse(("Paris", "nsubj", 1, "PROPN"), ("is", "ROOT", 1, "AUX"), ("the", "det", 3, "DET"), ("capital", "attr", 1, "NOUN"),
                ("of", "prep", 3, "ADP"), ("France", "pobj", 4, "PROPN"), ("and", "cc", 5, "CCONJ"), ("Spain", "conj", 5, "PROPN"))
# "Alice and Bob founded Acme."
FOUNDED = parse(("Alice", "nsubj", 3, "PROPN"), ("and", "cc", 0, "CCONJ"), ("Bob", "conj", 0, "PROPN"), ("founded", "ROOT", 3, "VERB"),
                ("Acme", "dobj", 3, "PROPN"))
# "She was born in Warsaw." (no named subject)
BORN = parse(("She", "nsubjpass", 2, "PRON"), ("was", "auxpass", 2, "AUX"), ("born", "ROOT", 2, "VERB"), ("in", "prep", 2, "ADP"), ("Warsaw", "pobj", 3, "PROPN"))


@pytest.mark.parametrize(
    "tokens, mentions, expected",
    [
        (CAPITAL, [Mention("Paris", "GPE", 0, 1), Mention("France", "GPE", 5, 6), Mention("Spain", "GPE", 7, 8)],
         [Triple(0, "is capital of", 1), Triple(0, "is capital of", 2)]),
        (FOUNDED, [Mention("Alice", "PERSON", 0, 1), Mention("Bob", "PERSON", 2, 3), Mention("Acme", "ORG", 4, 5)],
         [Triple(0, "founded", 2), Triple(1, "founded", 2)]),
        (BORN, [Mention("Warsaw", "GPE", 4, 5)], []),
        (CAPITAL, [Mention("Paris", "GPE", 0, 1)], []),  # no object entity
        (FOUNDED, [Mention("Acme", "ORG", 4, 5)], []),  # no subject entity
    ],
)
def test_triples_join_a_subject_entity_to_object_entities(tokens, mentions, expected):
    got = triples(tokens, mentions)
    assert sorted(got, key=lambda t: (t.subject, t.object)) == expected


def test_cooccurrence_pairs_are_per_sentence_and_skip_the_same_name_twice():
    tokens = parse(("A", "", 0, ""), ("B", "", 1, ""), ("A", "", 2, "")) + parse(("C", "", 3, ""), ("D", "", 4, ""), sentence=1)
    mentions = [Mention("A", "ORG", 0, 1), Mention("B", "ORG", 1, 2), Mention("A", "ORG", 2, 3), Mention("C", "GPE", 3, 4), Mention("D", "GPE", 4, 5)]
    assert cooccurrences(tokens, mentions) == [(0, 1), (1, 2), (3, 4)]


def test_only_named_entity_types_are_kept():
    types = ["PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE",
             "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"]
    assert [m.type for m in kept([Mention("x", t, 0, 1) for t in types])] == types[:11]
    assert kept([Mention("x" * 201, "ORG", 0, 1)]) == []


# ---------------------------------------------------------------- resolution


@pytest.mark.parametrize(
    "name, normal",
    [("Marie Curie", "marie curie"), ("  MARIE   CURIE ", "marie curie"), ("Marie Curie's", "marie curie"), ("the United States", "united states"),
     ("The Hague", "hague"), ("“Acme Corp.”", "acme corp"), ("Ｔｏｋｙｏ", "tokyo"), ("São Paulo", "são paulo"), ("the", "the")],
)
def test_normalise(name, normal):
    assert normalise(name) == normal


def test_mentions_resolve_within_their_type_group_only():
    r = Resolver()
    cases = [
        ("PERSON", "Marie Curie", "e/person/marie curie"),
        ("PERSON", "Curie", "e/person/marie curie"),  # the one known person of that surname
        ("PERSON", "Marie Curiie", "e/person/marie curie"),  # a typo
        ("PERSON", "Curie, Marie", "e/person/marie curie"),  # word order
        ("ORG", "Curie", "e/org/curie"),  # another group: never merged
        ("ORG", "Curie Institute", "e/org/curie institute"),
        ("PERSON", "Pierre Curie", "e/person/pierre curie"),
        ("GPE", "United States", "e/place/united states"),
        ("LOC", "the United States", "e/place/united states"),  # GPE and LOC are one group
        ("GPE", "US", "e/place/us"),
        ("GPE", "UK", "e/place/uk"),  # short names are not merged by likeness
        ("NORP", "French", "e/group/french"),
        ("GPE", "France", "e/place/france"),
    ]
    assert [(t, n, r.resolve(t, n)) for t, n, _ in cases] == [(t, n, want) for t, n, want in cases]
    assert "curie" in r.entities["e/person/marie curie"].aliases


def test_a_surname_shared_by_two_known_people_is_not_merged():
    r = Resolver([Entity("e/person/marie curie", "person", "Marie Curie"), Entity("e/person/pierre curie", "person", "Pierre Curie")])
    assert r.resolve("PERSON", "Curie") == "e/person/curie"


def test_resolution_by_id_needs_no_lookup_and_bad_names_are_refused():
    assert entity_id("GPE", "The Netherlands") == entity_id("LOC", "netherlands") == "e/place/netherlands"
    with pytest.raises(ValueError):
        Resolver().resolve("ORG", " ... ")
