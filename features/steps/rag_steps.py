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
    context.answer = ok(send(context, "POST", f"/rag/{corpus}/query", {"question": question, "mode": mode, "k": 3}, JSON), 200)


@then('the first chunk is from "{document}" and says "{words}"')
def step_first_chunk(context, document, words):
    first = context.answer["chunks"][0]
    assert first["document_id"] == document and words in first["text"], context.answer["chunks"]


@then('the entity "{entity}" of "{corpus}" is {state}')
def step_entity(context, entity, corpus, state):
    resp = send(context, "GET", f"/graphs/{corpus}/vertices/{quote(entity, safe='')}")
    assert resp.status == (200 if state == "there" else 404), f"{entity}: {resp!r}"


@then('"{entity}" of "{corpus}" is related to "{other}" by {chunks:d} {unit:w}')
def step_related(context, entity, corpus, other, chunks, unit):
    edges = ok(send(context, "GET", f"/graphs/{corpus}/vertices/{quote(entity, safe='')}/edges?direction=out&type=RELATED"), 200)["edges"]
    weights = [e["weight"] for e in edges if e["dst"] == other]
    assert weights == [float(chunks)], edges
