"""Process logs: text lines for people, or JSON lines for a log pipeline
(``--log-format json``).

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
the process's ``role`` and, for a node or coordinator, its id as ``node_id`` or
``coordinator_id``; then whatever the log call passed in ``extra``, so that

    log.info("moved shard %d to %s", 3, "n2", extra={"shard": 3, "epoch": 12})

by a node ``n1`` is written as

    {"time": "2026-01-05T10:00:00.123Z", "level": "info", "logger": "torua.node",
     "message": "moved shard 3 to n2", "role": "node", "node_id": "n1", "shard": 3, "epoch": 12}

and an exception's traceback comes as ``exc``, in the same line.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

LOG_FORMATS = ("text", "json")

# What every LogRecord has; anything else on a record came from `extra`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def iso_utc(created: float) -> str:
    """``1767607200.1234`` -> ``2026-01-05T10:00:00.123Z``."""
    moment = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included)."""

    def __init__(self, role: str, process_id: str = "") -> None:
        super().__init__()
        self.identity: dict[str, str] = {"role": role}
        if process_id:
            self.identity[f"{role}_id"] = process_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.identity,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and name not in out and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def text_formatter(role: str, process_id: str = "") -> logging.Formatter:
    label = f"{role}[{process_id}]" if process_id else role
    return logging.Formatter(f"%(asctime)s %(levelname)s {label} %(name)s: %(message)s")


def setup_logging(level: str, log_format: str = "text", role: str = "torua", process_id: str = "") -> None:
    """Log to stderr at `level` in `log_format` (text or json), once per process."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(role, process_id) if log_format == "json" else text_formatter(role, process_id))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
