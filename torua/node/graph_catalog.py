"""A primary drops, on its own, the graphs the catalog no longer has
(docs/design/graph.md, section 6): `DELETE /graphs/{g}` deletes the catalog key and
asks every shard's primary to log `graph.drop`; a shard that missed the request
(its primary was failing over, say) finds out here. A graph created again under
the same name has a new uid: the old uid is gone from the catalog, and dropped.

The catalog is the JetStream KV bucket ``torua_graphs``: key the graph's name,
value JSON with its ``uid``. Nothing is dropped while the bucket cannot be read.

>>> orphaned([("people", "u1"), ("people", "u0"), ("docs", "u2")], {"people": "u1", "docs": None})
['u0', 'u2']
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from nats.js.errors import KeyNotFoundError

from torua.protocol import subjects

log = logging.getLogger("torua.node.graph")

SWEEP_SECONDS = 30.0  # how often a primary compares its graphs with the catalog


def orphaned(held: Iterable[tuple[str, str]], catalog: Mapping[str, str | None]) -> list[str]:
    """The uids among `held` ((name, uid) pairs a shard holds rows of) that the catalog
    (name -> its uid now, None: no such graph) no longer has, in order."""
    return [uid for name, uid in held if name in catalog and catalog[name] != uid]


async def catalog_uids(nc: Any, names: Iterable[str]) -> dict[str, str | None] | None:
    """Each name's uid in the catalog now (None: deleted or never made); None when the
    catalog cannot be read (no bucket yet, no access, JetStream busy)."""
    try:
        kv = await nc.jetstream().key_value(subjects.GRAPH_BUCKET)
    except Exception as exc:
        log.debug("graph catalog not readable: %s", exc)
        return None
    found: dict[str, str | None] = {}
    for name in set(names):
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:  # KeyDeletedError too
            found[name] = None
            continue
        except Exception as exc:
            log.debug("graph catalog entry %s not readable: %s", name, exc)
            return None
        try:
            value = json.loads(entry.value or b"{}")
        except ValueError:
            log.warning("graph catalog entry %s is not JSON; leaving its graph alone", name)
            continue
        uid = value.get("uid") if isinstance(value, dict) else None
        if isinstance(uid, str) and uid:
            found[name] = uid
        else:
            log.warning("graph catalog entry %s names no uid; leaving its graph alone", name)
    return found
