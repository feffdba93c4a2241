"""A labelled multi-hop retrieval set built from public facts that packages on PyPI
ship (`countryinfo`: capitals, borders, populations, currencies and languages of
countries; `pycountry`: the names of currencies and languages), with the documents
that support each question known by construction (docs/design/graphrag.md
section 7). No package on the registries ships HotpotQA, 2WikiMultiHopQA or
MuSiQue passages; this is the stand-in, frozen (`FROZEN`) so that a change of
those packages never changes what is measured.

Each country C of the set gets three short documents, each with facts the others
lack:

- `geo/C`: where C is and what it borders;
- `city/C`: C's capital;
- `people/C`: C's currency, languages and population.

Questions need two of them (a bridge through C, or a comparison of two
countries), so a retriever that finds one supporting document by the words of the
question must find the other through what the first one says:

- `capital-by-currency`: "What is the capital of the country that uses the
  Zambian kwacha?" -> people/Zambia, city/Zambia (currencies used by one country
  of the set only);
- `currency-by-capital`: "Which currency is used in the country whose capital is
  Lusaka?" -> city/Zambia, people/Zambia;
- `capital-by-borders`: "What is the capital of the country that borders both
  Angola and Malawi?" -> geo/Zambia, city/Zambia (the only country of the set
  bordering both);
- `more-people`: "Which has more people, Zambia or Malawi?" -> people/Zambia,
  people/Malawi.

Questions are split in halves by the hash of their id: `dev` to choose settings
on, `test` to report; nothing is tuned on `test`.

>>> documents, questions = build(seed=7, countries=12)
>>> sorted({d["id"].split("/")[0] for d in documents}), len(documents)
(['city', 'geo', 'people'], 36)
>>> q = questions[0]; sorted(q), len(q["support"])
(['answer', 'half', 'id', 'kind', 'question', 'support'], 2)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

FORMAT = 1
SEED = 13
COUNTRIES = 150
FROZEN = Path(__file__).parent / "data" / "countries-multihop-v1.json"


def _facts() -> list[dict[str, Any]]:
    """Every country with what the documents say of it (countryinfo, pycountry)."""
    import pycountry
    from countryinfo import CountryInfo

    def currency(code: str) -> str | None:
        found = pycountry.currencies.get(alpha_3=code)
        return found.name if found else None

    def language(code: str) -> str | None:
        found = pycountry.languages.get(alpha_2=code) if len(code) == 2 else pycountry.languages.get(alpha_3=code)
        return found.name if found else None

    out = []
    for info in CountryInfo.all().values():
        iso = (info.get("ISO") or {}).get("alpha3")
        needed = (info.get("name"), info.get("capital"), info.get("population"), info.get("subregion"), iso)
        if not all(needed) or not isinstance(info["capital"], str) or not isinstance(info["subregion"], str):
            continue  # a country with several capitals, or facts missing
        if info["capital"] in info["name"] or info["name"] in info["capital"]:
            continue  # Singapore, Gibraltar, Kuwait City: the question would hold its answer
        currencies = [c for c in (currency(x) for x in info.get("currencies") or []) if c]
        languages = [lang for lang in (language(x) for x in info.get("languages") or []) if lang]
        if not currencies or not languages:
            continue
        out.append({
            "name": info["name"], "iso": iso, "capital": info["capital"], "population": int(info["population"]),
            "subregion": info["subregion"], "borders": list(info.get("borders") or []), "currencies": currencies, "languages": languages,
        })
    return sorted(out, key=lambda c: c["iso"])


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _documents(country: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    c = country["name"]
    neighbours = [names[b] for b in country["borders"] if b in names]
    geo = f"{c} is a country in {country['subregion']}."
    geo += f" {c} borders {_and(neighbours)}." if neighbours else f" {c} has no land border with the countries described here."
    city = f"The capital of {c} is {country['capital']}. {country['capital']} is the seat of the government of {c}."
    people = (
        f"{c} uses the {_and(country['currencies'])}. The languages spoken in {c} include {_and(country['languages'])}. "
        f"{c} has a population of {country['population']:,} people."
    )
    return [
        {"id": f"geo/{country['iso']}", "text": geo},
        {"id": f"city/{country['iso']}", "text": city},
        {"id": f"people/{country['iso']}", "text": people},
    ]


def _half(question_id: str) -> str:
    return "dev" if int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def build(seed: int = SEED, countries: int = COUNTRIES) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(documents, questions) for `countries` countries drawn with `seed`."""
    rng = random.Random(seed)
    facts = _facts()
    chosen = sorted(rng.sample(facts, min(countries, len(facts))), key=lambda c: c["iso"])
    names = {c["iso"]: c["name"] for c in chosen}
    documents = [d for c in chosen for d in _documents(c, names)]
    users = Counter(cur for c in chosen for cur in c["currencies"])
    capitals = Counter(c["capital"] for c in chosen)
    questions: list[dict[str, Any]] = []

    def ask(kind: str, key: str, text: str, answer: str, support: list[str]) -> None:
        qid = f"{kind}/{key}"
        questions.append({"id": qid, "kind": kind, "question": text, "answer": answer, "support": support, "half": _half(qid)})

    for c in chosen:
        iso = c["iso"]
        solo = [cur for cur in c["currencies"] if users[cur] == 1]
        if solo:
            ask("capital-by-currency", iso, f"What is the capital of the country that uses the {solo[0]}?", c["capital"], [f"people/{iso}", f"city/{iso}"])
        if capitals[c["capital"]] == 1:
            ask("currency-by-capital", iso, f"Which currency is used in the country whose capital is {c['capital']}?", c["currencies"][0],
                [f"city/{iso}", f"people/{iso}"])
        neighbours = sorted(b for b in c["borders"] if b in names)
        for a, b in ((neighbours[i], neighbours[j]) for i in range(len(neighbours)) for j in range(i + 1, len(neighbours))):
            both = [o for o in chosen if a in o["borders"] and b in o["borders"]]
            if both == [c]:
                ask("capital-by-borders", iso, f"What is the capital of the country that borders both {names[a]} and {names[b]}?", c["capital"],
                    [f"geo/{iso}", f"city/{iso}"])
                break
    pairs = [(a, b) for a in chosen for b in chosen if a["iso"] < b["iso"] and a["population"] != b["population"]]
    for a, b in rng.sample(pairs, min(len(pairs), countries // 2)):
        bigger = a if a["population"] > b["population"] else b
        ask("more-people", f"{a['iso']}-{b['iso']}", f"Which has more people, {a['name']} or {b['name']}?", bigger["name"],
            [f"people/{a['iso']}", f"people/{b['iso']}"])
    return documents, questions


def freeze(path: Path = FROZEN) -> dict[str, Any]:
    """Build the set and write it (with where it came from) to `path`."""
    import importlib.metadata as metadata

    documents, questions = build()
    doc = {
        "format": FORMAT, "seed": SEED, "countries": COUNTRIES,
        "sources": {"countryinfo": metadata.version("countryinfo"), "pycountry": metadata.version("pycountry")},
        "documents": documents, "questions": questions,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    return doc


def load(path: Path = FROZEN) -> dict[str, Any]:
    return json.loads(path.read_text())


if __name__ == "__main__":
    made = freeze()
    halves = Counter(q["half"] for q in made["questions"])
    kinds = Counter(q["kind"] for q in made["questions"])
    print(f"{FROZEN}: {len(made['documents'])} documents, {len(made['questions'])} questions {dict(kinds)}, halves {dict(halves)}")
