"""The frozen multi-hop set of `torua rag eval` (torua/rag/eval_set.py): rebuilt from
the pinned countryinfo and pycountry it is byte for byte the file in the repository,
and each question's supporting documents hold the facts it needs, one hop each."""

from __future__ import annotations

import json
from collections import Counter

from torua.rag import eval_set


def test_the_frozen_set_is_what_its_sources_build(tmp_path):
    rebuilt = eval_set.freeze(tmp_path / "set.json")
    assert (tmp_path / "set.json").read_text() == eval_set.FROZEN.read_text()
    assert rebuilt["sources"] == {"countryinfo": "1.0.1", "pycountry": "26.2.16"}


def test_each_question_needs_both_of_its_documents():
    frozen = eval_set.load()
    texts = {d["id"]: d["text"] for d in frozen["documents"]}
    assert len(texts) == len(frozen["documents"]) == 3 * frozen["countries"]
    kinds = Counter(q["kind"] for q in frozen["questions"])
    assert set(kinds) == {"capital-by-currency", "currency-by-capital", "capital-by-borders", "more-people"} and min(kinds.values()) >= 50
    halves = Counter(q["half"] for q in frozen["questions"])
    assert abs(halves["dev"] - halves["test"]) < 0.1 * len(frozen["questions"])
    for q in frozen["questions"]:
        first, second = (texts[s] for s in q["support"])
        if q["kind"] == "capital-by-currency":  # the currency leads to the country, the country to its capital
            currency = q["question"].split("uses the ", 1)[1].rstrip("?")
            assert currency in first and currency not in second and q["answer"] in second and q["answer"] not in first, q
        elif q["kind"] == "currency-by-capital":
            capital = q["question"].split("whose capital is ", 1)[1].rstrip("?")
            assert capital in first and capital not in second and q["answer"] in second, q
        elif q["kind"] == "capital-by-borders":
            assert " borders " in first and q["answer"] in second and q["answer"] not in first, q
        else:
            assert "population" in first and "population" in second, q
    assert json.loads(eval_set.FROZEN.read_text())["format"] == eval_set.FORMAT
