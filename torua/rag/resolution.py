"""Entity resolution: which entity vertex a mention names (docs/design/graphrag.md
sections 1 and 3). Pure: names and types in, entity ids out.

- A name is normalised (Unicode NFKC, case folded, a leading "the" and a trailing
  possessive dropped, spaces collapsed) and an entity's vertex id is its type group
  and normalised name, `e/{group}/{name}`: every worker that meets "Marie Curie" or
  "marie curie's" names the same vertex, with no lookup.
- Types merge only within a group (`TYPE_GROUPS`: a city tagged GPE and a region
  tagged LOC are one place; a person never merges with an organisation).
- A name not known as such is matched against the known entities of its group: an
  alias seen before; a one-word name that is the last word of exactly one known
  person ("Curie" after "Marie Curie"); else the closest known name by
  `rapidfuzz`'s token-sort ratio when it reaches `threshold` (typos, word order)
  and both names have at least `MIN_FUZZY_CHARS` characters (so "US" and "UK" stay
  apart). Otherwise it is a new entity.

>>> r = Resolver()
>>> [r.resolve("PERSON", n) for n in ("Marie Curie", "Curie", "marie curie's", "Marie Curiee", "Pierre Curie")]
['e/person/marie curie', 'e/person/marie curie', 'e/person/marie curie', 'e/person/marie curie', 'e/person/pierre curie']
>>> r.resolve("ORG", "Curie"), r.resolve("GPE", "the Netherlands"), r.resolve("LOC", "Netherlands")
('e/org/curie', 'e/place/netherlands', 'e/place/netherlands')
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

TYPE_GROUPS = {
    "PERSON": "person",
    "ORG": "org",
    "GPE": "place",
    "LOC": "place",
    "FAC": "place",
    "NORP": "group",
    "PRODUCT": "product",
    "EVENT": "event",
    "WORK_OF_ART": "work",
    "LAW": "law",
    "LANGUAGE": "language",
}
THRESHOLD = 90.0
MIN_FUZZY_CHARS = 5

_SPACES = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"(?:'s|’s|'|’)$")
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(name: str) -> str:
    """
    >>> normalise("  The  Hague’s "), normalise("ÉCOLE Normale"), normalise('"Apple Inc."')
    ('hague', 'école normale', 'apple inc')
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", name).casefold()).strip()
    text = _EDGES.sub("", text)
    text = _POSSESSIVE.sub("", text)
    if text.startswith("the ") and len(text) > 4:
        text = text[4:]
    return _EDGES.sub("", text)


def group_of(type: str) -> str:
    return TYPE_GROUPS.get(type, type.lower())


def entity_id(type: str, name: str) -> str:
    return f"e/{group_of(type)}/{normalise(name)}"


@dataclass
class Entity:
    id: str
    group: str
    name: str  # the first surface form seen
    aliases: set[str] = field(default_factory=set)  # normalised names that resolved to it


class Resolver:
    """The known entities of a corpus (or of what a worker has seen of it), and the
    rules that map a mention to one of them or to a new one."""

    def __init__(self, known: Iterable[Entity] = (), threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self.entities: dict[str, Entity] = {}
        self._names: dict[str, dict[str, str]] = {}  # group -> normalised name or alias -> id
        self.fresh: list[Entity] = []  # entities made by `resolve` since the caller last took them (to tell others)
        for entity in known:
            self._add(entity)

    def learn(self, entity_id: str, name: str) -> bool:
        """Know an entity someone else made (`e/{group}/{name}`: a corpus's vertex, another
        worker's new one); False when it was known or is not an entity id.

        >>> r = Resolver()
        >>> r.learn("e/person/marie curie", "Marie Curie"), r.learn("e/person/marie curie", "M. Curie"), r.learn("c/x/1", "x")
        (True, False, False)
        >>> r.resolve("PERSON", "Marie Curiee"), r.resolve("PERSON", "Curie"), r.fresh
        ('e/person/marie curie', 'e/person/marie curie', [])
        """
        parts = entity_id.split("/", 2)
        if len(parts) != 3 or parts[0] != "e" or not parts[2] or entity_id in self.entities:
            return False
        self._add(Entity(entity_id, parts[1], name))
        return True

    def _add(self, entity: Entity) -> None:
        self.entities[entity.id] = entity
        names = self._names.setdefault(entity.group, {})
        names[entity.id.split("/", 2)[2]] = entity.id
        for alias in entity.aliases:
            names.setdefault(alias, entity.id)

    def resolve(self, type: str, name: str) -> str:
        """The id of the entity `name` (of `type`) names; a new one is remembered."""
        group, key = group_of(type), normalise(name)
        if not key:
            raise ValueError(f"{name!r} is not a name")
        names = self._names.setdefault(group, {})
        found = names.get(key) or self._surname(group, key) or self._closest(names, key)
        if found is None:
            entity = Entity(f"e/{group}/{key}", group, name.strip())
            self._add(entity)
            self.fresh.append(entity)
            return entity.id
        names[key] = found
        self.entities[found].aliases.add(key)
        return found

    def _surname(self, group: str, key: str) -> str | None:
        if group != "person" or " " in key:
            return None
        matches = {id for name, id in self._names[group].items() if " " in name and name.rsplit(" ", 1)[1] == key}
        return matches.pop() if len(matches) == 1 else None

    def _closest(self, names: dict[str, str], key: str) -> str | None:
        if len(key) < MIN_FUZZY_CHARS:
            return None
        candidates = [n for n in names if len(n) >= MIN_FUZZY_CHARS]
        best = process.extractOne(key, candidates, scorer=fuzz.token_sort_ratio, score_cutoff=self.threshold)
        return names[best[0]] if best else None
