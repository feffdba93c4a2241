"""The catalog of named graphs, as plain data (docs/design/graph.md, section 6).

It lives in the JetStream KV bucket ``torua_graphs`` (`torua.protocol.subjects.GRAPH_BUCKET`):
key = the graph's name, value = JSON ``{name, uid, vector_dim, metric,
text_properties, created_at}``. `PUT /graphs/{g}` creates the key with a KV
create, so of two concurrent creates only one wins; what the loser answers is
`on_create`. A graph created again after a delete gets a new `uid`, so nothing
of the old one shows. Pure: the JetStream side is `torua.graph.catalog_cache`.

>>> wanted = GraphSettings(vector_dim=3)
>>> entry = new_entry("docs", wanted, uid="u1", now=0.0)
>>> on_create(None, wanted), on_create(entry, wanted), on_create(entry, GraphSettings())
('created', 'same', 'conflict')
>>> CatalogEntry.from_json(entry.to_json()) == entry
True
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, Literal

from torua.graph.rules import validate_graph_name, validate_metric, validate_text_properties, validate_vector_dim
from torua.protocol.errors import ToruaError
from torua.protocol.messages import GraphRef
from torua.protocol.vocabulary import VectorMetric


@dataclass(frozen=True)
class GraphSettings:
    """What `PUT /graphs/{g}` sets: every field optional (`vector_dim` 0 = no vectors)."""

    vector_dim: int = 0
    metric: VectorMetric = VectorMetric.COSINE
    text_properties: tuple[str, ...] = ()

    @classmethod
    def checked(cls, vector_dim: object = 0, metric: object = "cosine", text_properties: object = None) -> "GraphSettings":
        return cls(
            validate_vector_dim(0 if vector_dim is None else vector_dim),
            validate_metric("cosine" if metric is None else metric),
            validate_text_properties(text_properties),
        )


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    uid: str
    settings: GraphSettings
    created_at: str  # ISO-8601 UTC

    def ref(self) -> GraphRef:
        """What every request for this graph carries to the nodes."""
        s = self.settings
        return GraphRef(self.name, self.uid, s.vector_dim, s.metric, list(s.text_properties))

    def view(self) -> dict[str, Any]:
        """The catalog's part of `GET /graphs/{g}` (and each item of `GET /graphs`)."""
        s = self.settings
        return {
            "name": self.name, "uid": self.uid, "vector_dim": s.vector_dim, "metric": str(s.metric),
            "text_properties": list(s.text_properties), "created_at": self.created_at,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.view(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "CatalogEntry":
        """An entry as stored; `bad_request` for anything else (a hand-written key, say)."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or not isinstance(raw.get("uid"), str) or not raw["uid"]:
                raise ValueError
            settings = GraphSettings.checked(raw.get("vector_dim", 0), raw.get("metric", "cosine"), raw.get("text_properties"))
            return cls(validate_graph_name(raw.get("name")), raw["uid"], settings, str(raw.get("created_at", "")))
        except (ValueError, UnicodeDecodeError, ToruaError):
            raise ToruaError("bad_request", "not a graph catalog entry") from None


def new_entry(name: str, settings: GraphSettings, uid: str, now: float) -> CatalogEntry:
    created = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()
    return CatalogEntry(validate_graph_name(name), uid, settings, created)


def on_create(existing: CatalogEntry | None, wanted: GraphSettings) -> Literal["created", "same", "conflict"]:
    """What `PUT /graphs/{g}` answers: created (201), it exists with these settings (200),
    or with others (409)."""
    if existing is None:
        return "created"
    return "same" if existing.settings == wanted else "conflict"


def conflict_message(existing: CatalogEntry, wanted: GraphSettings) -> str:
    """Which settings differ, e.g. ``graph docs exists with vector_dim 384, not 3``."""
    have, want = existing.settings, wanted
    differ = [
        f"{name} {getattr(have, name)!s}, not {getattr(want, name)!s}" if name != "text_properties"
        else f"text_properties {list(have.text_properties)}, not {list(want.text_properties)}"
        for name in ("vector_dim", "metric", "text_properties")
        if getattr(have, name) != getattr(want, name)
    ]
    return f"graph {existing.name} exists with {'; '.join(differ)}; delete it first to change its settings"
