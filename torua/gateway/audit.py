"""The audit trail of the gateway's admin calls: who asked what, and how it ended.

Every call of an operation in `ADMIN_OPERATIONS` (whatever changes the cluster
rather than data: moves, flags, settings, broadcasts, graphs made or removed),
through REST or the NATS API, is one JSON line, written when the call ends, to
the `torua.audit` logger (so to the gateway's log) and, with `--audit-log FILE`,
to that file; and it is counted in `torua_gateway_admin_calls{op, outcome}`.
`who` is what the front-end knows of the caller: the API key's name and id
(without keys, --insecure: only the REST peer's address, or `nats`), then the peer.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("torua.audit")

ADMIN_OPERATIONS = frozenset({
    "assign", "drain", "maintenance", "evacuate", "set_cluster_config", "rebalance", "broadcast", "graph_create", "graph_delete",
    "auth_create", "auth_revoke", "rag_create",
})
# Arguments kept in the trail: small and saying what was asked (never values or bodies of data).
MAX_ARGUMENT_CHARS = 200


def audit_record(op: str, arguments: Mapping[str, Any], who: str, outcome: str, now: float) -> dict[str, Any]:
    """One line of the trail.

    >>> audit_record("drain", {"node_id": "n2", "on": True}, "127.0.0.1", "ok", 0.0)
    {'time': '1970-01-01T00:00:00.000Z', 'op': 'drain', 'who': '127.0.0.1', 'outcome': 'ok', 'arguments': {'node_id': 'n2', 'on': True}}
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return {"time": stamp, "op": op, "who": who, "outcome": outcome, "arguments": {k: _short(v) for k, v in arguments.items()}}


def _short(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_ARGUMENT_CHARS else text[:MAX_ARGUMENT_CHARS] + "..."


class AuditTrail:
    def __init__(self, path: str = "") -> None:
        self.path = Path(path) if path else None

    def record(self, op: str, arguments: Mapping[str, Any], who: str, outcome: str) -> None:
        line = json.dumps(audit_record(op, arguments, who, outcome, time.time()), sort_keys=False)
        log.info("%s", line)
        if self.path is not None:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            except OSError as exc:  # the call is done; losing its audit line is said, not raised
                log.error("could not append to the audit log %s: %s", self.path, exc)
