"""What a chunk says about entities and their relations, read from a parse
(docs/design/graphrag.md section 1). Pure: the parse comes in as plain tokens and
spans (`torua.rag.spacy_extractor` makes them from spaCy), mentions, triples and
co-occurrences go out, so the rules are tested with hand-made parses.

- **Mentions**: named entities of the types in `ENTITY_TYPES` (numbers, dates and
  amounts are left out: as vertices they join unrelated facts).
- **Triples** (subject, predicate, object): the subject of a verb inside one mention,
  and an object inside another: the verb's direct object or attribute, the object
  of a preposition attached to the verb (predicate "verb prep") or to its attribute
  ("be capital of"), and the conjuncts of each.
- **Co-occurrence**: every two mentions of one sentence, once per sentence.

>>> toks = [Token("Curie", "Curie", "nsubj", 1, "PROPN", 0), Token("discovered", "discover", "ROOT", 1, "VERB", 0),
...         Token("polonium", "polonium", "dobj", 1, "NOUN", 0), Token("in", "in", "prep", 1, "ADP", 0), Token("Paris", "Paris", "pobj", 3, "PROPN", 0)]
>>> mentions = [Mention("Curie", "PERSON", 0, 1), Mention("Paris", "GPE", 4, 5)]
>>> triples(toks, mentions)
[Triple(subject=0, predicate='discover in', object=1)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

# OntoNotes types kept as entities; DATE, TIME, PERCENT, MONEY, QUANTITY, ORDINAL and CARDINAL are not
ENTITY_TYPES = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE"})
SUBJECTS = frozenset({"nsubj", "nsubjpass"})
OBJECTS = frozenset({"dobj", "attr", "dative", "oprd", "acomp"})
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Token:
    """One token of a parse: `head` is the index of its head in the chunk's token list
    (its own index for a root), `sentence` the index of its sentence."""

    text: str
    lemma: str
    dep: str
    head: int
    pos: str
    sentence: int


@dataclass(frozen=True)
class Mention:
    """A named entity: its text, type, and token span [start, end) in the chunk."""

    text: str
    type: str
    start: int
    end: int


@dataclass(frozen=True)
class Triple:
    subject: int  # index of a mention
    predicate: str
    object: int


@dataclass(frozen=True)
class Extraction:
    """What one chunk yields: its mentions (with character offsets in the chunk),
    triples and co-occurring pairs (indexes into `mentions`)."""

    mentions: tuple[Mention, ...]
    offsets: tuple[tuple[int, int], ...]
    triples: tuple[Triple, ...]
    cooccurrences: tuple[tuple[int, int], ...]


def kept(mentions: Sequence[Mention]) -> list[Mention]:
    """The mentions of `ENTITY_TYPES` with a name to speak of.

    >>> [m.text for m in kept([Mention("1898", "DATE", 0, 1), Mention("Paris", "GPE", 2, 3), Mention(" ", "ORG", 4, 5)])]
    ['Paris']
    """
    return [m for m in mentions if m.type in ENTITY_TYPES and m.text.strip() and len(m.text) <= MAX_NAME_CHARS]


def _mention_of(tokens_in: dict[int, int], index: int) -> int | None:
    return tokens_in.get(index)


def triples(tokens: Sequence[Token], mentions: Sequence[Mention]) -> list[Triple]:
    """Subject-verb-object triples between mentions (see the module's docstring)."""
    tokens_in = {t: i for i, m in enumerate(mentions) for t in range(m.start, m.end)}
    children: dict[int, list[int]] = {}
    for i, token in enumerate(tokens):
        if token.head != i:
            children.setdefault(token.head, []).append(i)

    def with_conjuncts(index: int) -> list[int]:
        out, todo = [], [index]
        while todo:
            current = todo.pop()
            out.append(current)
            todo.extend(c for c in children.get(current, []) if tokens[c].dep == "conj")
        return out

    def via_prep(index: int) -> list[tuple[str, int]]:
        """(preposition, object) pairs hanging off `index`."""
        found = []
        for prep in children.get(index, []):
            if tokens[prep].dep == "prep":
                found.extend((tokens[prep].lemma.lower(), pobj) for pobj in children.get(prep, []) if tokens[pobj].dep == "pobj")
        return found

    out: list[Triple] = []
    seen: set[tuple[int, str, int]] = set()
    for verb, token in enumerate(tokens):
        if token.pos not in ("VERB", "AUX"):
            continue
        kids = children.get(verb, [])
        subjects = {s for k in kids if tokens[k].dep in SUBJECTS for c in with_conjuncts(k) if (s := _mention_of(tokens_in, c)) is not None}
        if not subjects:
            continue
        objects: list[tuple[str, int]] = []
        lemma = token.lemma.lower()
        for k in kids:
            if tokens[k].dep in OBJECTS:
                for c in with_conjuncts(k):
                    objects.append((lemma, c))
                    objects.extend((f"{lemma} {tokens[c].lemma.lower()} {prep}", pobj) for prep, pobj in via_prep(c))
        objects.extend((f"{lemma} {prep}", pobj) for prep, pobj in via_prep(verb))
        for predicate, index in objects:
            for o in with_conjuncts(index):
                obj = _mention_of(tokens_in, o)
                for subject in subjects:
                    if obj is not None and obj != subject and (subject, predicate, obj) not in seen:
                        seen.add((subject, predicate, obj))
                        out.append(Triple(subject, predicate, obj))
    return out


def cooccurrences(tokens: Sequence[Token], mentions: Sequence[Mention]) -> list[tuple[int, int]]:
    """Every two mentions of one sentence (by index, the lower first), once per sentence;
    two mentions of one name in a sentence are not a pair.

    >>> toks = [Token("a", "a", "", 0, "", 0), Token("b", "b", "", 1, "", 0), Token("c", "c", "", 2, "", 1)]
    >>> cooccurrences(toks, [Mention("A", "ORG", 0, 1), Mention("B", "ORG", 1, 2), Mention("C", "ORG", 2, 3)])
    [(0, 1)]
    """
    by_sentence: dict[int, list[int]] = {}
    for i, m in enumerate(mentions):
        by_sentence.setdefault(tokens[m.start].sentence, []).append(i)
    pairs: list[tuple[int, int]] = []
    for members in by_sentence.values():
        for a, b in combinations(members, 2):
            if (mentions[a].text, mentions[a].type) != (mentions[b].text, mentions[b].type):
                pairs.append((a, b))
    return pairs
