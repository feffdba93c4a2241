"""Steps for GraphRAG (BRIEF section 10) through the gateway's REST API."""

from __future__ import annotations

import json
from urllib.parse import quote

from behave import given, then, when

from graph_steps import JSON, NDJSON, ok, send, wait_for

WORKERS_READY_S = 60  # a worker answers once its models are loaded, a few seconds after torua up is ready
JOB_S = 120


@given('the corpus "{corpus}" with chunks of {tokens:d} tokens')
def step_corpus(context, corpus, tokens):
    def made():
        resp = send(context, "PUT", f"/rag/{corpus}", {"chunk_tokens": tokens, "overlap_tokens": tokens // 4})
        assert resp.status in (200, 201), f"PUT /rag/{corpus}: {resp!r}"  # 503 until a worker answers

    wait_for(made, WORKERS_READY_S, "a worker to make the corpus")


@when('I send these documents to "{corpus}"')
def step_send_documents(context, corpus):
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in json.loads(context.text))
    context.job = ok(send(context, "POST", f"/rag/{corpus}/documents", lines.encode(), NDJSON), 202)["job"]
    context.corpus = corpus


@when('I ask for the communities of "{corpus}"')
def step_build_communities(context, corpus):
    context.job = ok(send(context, "POST", f"/rag/{corpus}/communities", b""), 202)["job"]
    context.corpus = corpus


@then("the job ends with {done:d} documents done and {failed:d} failed")
def step_job_done(context, done, failed):
    def finished():
        status = ok(send(context, "GET", f"/rag/{context.corpus}/jobs/{context.job}"), 200)
        assert status["state"] == "done", status
        return status

    status = wait_for(finished, JOB_S, "the job to end")
    assert (status["done"], status["failed"]) == (done, failed), status


@when('the corpus "{corpus}" is asked "{question}" in mode "{mode}"')
def step_ask(context, corpus, question, mode):
    # Right after writes a shard's index may still be catching up: 503 or 504 "try again"
    # (Retry-After), and a client asks again.
    def answered():
        resp = send(context, "POST", f"/rag/{corpus}/query", {"question": question, "mode": mode, "k": 3}, JSON)
        assert resp.status not in (503, 504), resp
        return resp

    context.response = wait_for(answered, JOB_S, "an answer once the indexes caught up")
    context.answer = json.loads(context.response.body) if context.response.status == 200 else None


@then('the first chunk is from "{document}" and says "{words}"')
def step_first_chunk(context, document, words):
    assert context.answer is not None, f"the query failed: {context.response!r}"
    first = context.answer["chunks"][0]
    assert first["document_id"] == document and words in first["text"], context.answer["chunks"]


@then('the entity "{entity}" of "{corpus}" is {state}')
def step_entity(context, entity, corpus, state):
    resp = send(context, "GET", f"/graphs/{corpus}/vertices/{quote(entity, safe='')}")
    assert resp.status == (200 if state == "there" else 404), f"{entity}: {resp!r}"


@then('the first community\'s summary names "{words}"')
def step_community_summary(context, words):
    assert words in context.answer["communities"][0]["summary"], context.answer["communities"]


def _community(context, corpus: str, entity: str) -> str:
    edges = ok(send(context, "GET", f"/graphs/{corpus}/vertices/{quote(entity, safe='')}/edges?direction=out&type=IN_COMMUNITY"), 200)["edges"]
    assert len(edges) == 1, f"{entity} is in {len(edges)} communities: {edges}"
    return edges[0]["dst"]


@then('"{entity}" and "{other}" of "{corpus}" are in {where} communit{suffix:w}')
def step_same_community(context, entity, other, corpus, where, suffix):
    same = _community(context, corpus, entity) == _community(context, corpus, other)
    assert same == (where == "one"), (entity, other, where)


@then('"{entity}" of "{corpus}" is related to "{other}" by {chunks:d} {unit:w}')
def step_related(context, entity, corpus, other, chunks, unit):
    edges = ok(send(context, "GET", f"/graphs/{corpus}/vertices/{quote(entity, safe='')}/edges?direction=out&type=RELATED"), 200)["edges"]
    weights = [e["weight"] for e in edges if e["dst"] == other]
    assert weights == [float(chunks)], edges
