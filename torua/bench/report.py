"""The side-by-side table (each Torua figure beside its anchor) and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

from torua.bench.load import Result

LABELS = {
    "nats-echo": "bare NATS echo",
    "aiohttp-echo-get": "aiohttp+NATS echo GET",
    "aiohttp-echo-put": "aiohttp+NATS echo PUT",
    "jskv-get": "JetStream KV get",
    "jskv-put": "JetStream KV put",
    "http-get": "HTTP GET",
    "http-put": "HTTP PUT",
    "nats-api-get": "NATS API GET",
    "nats-api-put": "NATS API PUT",
    "client-get": "torua.Client GET",
    "client-put": "torua.Client PUT",
}
# (section, Torua figure, anchor)
PAIRS = (
    ("GET vs its floor", "http-get", "aiohttp-echo-get"),
    ("GET vs its floor", "client-get", "nats-echo"),
    ("GET vs its floor", "nats-api-get", "nats-echo"),
    ("GET vs JetStream KV", "http-get", "jskv-get"),
    ("GET vs JetStream KV", "nats-api-get", "jskv-get"),
    ("GET vs JetStream KV", "client-get", "jskv-get"),
    ("PUT vs JetStream KV (same durability)", "http-put", "jskv-put"),
    ("PUT vs JetStream KV (same durability)", "nats-api-put", "jskv-put"),
    ("PUT vs JetStream KV (same durability)", "client-put", "jskv-put"),
    ("PUT vs its floor", "http-put", "aiohttp-echo-put"),
)


def ratios(results: list[Result]) -> list[dict]:
    by = {(r.name, r.concurrency): r for r in results}
    out = []
    for _, torua, anchor in PAIRS:
        for (name, c), t in by.items():
            a = by.get((anchor, c))
            if name != torua or a is None:
                continue
            out.append({
                "torua": torua, "anchor": anchor, "concurrency": c,
                "throughput_ratio": round(t.throughput / a.throughput, 3) if a.throughput else None,
                "p50_ratio": round(t.p50_ms / a.p50_ms, 3) if a.p50_ms else None,
                "p99_ratio": round(t.p99_ms / a.p99_ms, 3) if a.p99_ms else None,
            })
    return out


def _label(name: str, durability: dict) -> str:
    if name.endswith("-put") and not name.startswith("aiohttp"):
        tag = durability["jetstream_tag"] if name.startswith("jskv") else durability["torua_tag"]
        return f"{LABELS[name]} [{tag}]"
    return LABELS[name]


def _cells(r: Result) -> str:
    return f"{r.throughput:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"


def table(results: list[Result], durability: dict, header: str) -> str:
    by = {(r.name, r.concurrency): r for r in results}
    concurrencies = sorted({r.concurrency for r in results})
    lines = [header, f"Durability: Torua {durability['torua']}; JetStream anchor {durability['jetstream']}", ""]
    head = f"{'':<38}{'c':>4} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} | {'anchor':<36}{'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} | {'ratio':>6}"
    section = None
    for name, torua, anchor in PAIRS:
        rows = [(by[(torua, c)], by[(anchor, c)]) for c in concurrencies if (torua, c) in by and (anchor, c) in by]
        if not rows:
            continue
        if name != section:
            section = name
            lines += ["", f"{name}:", head]
        for t, a in rows:
            ratio = f"{t.throughput / a.throughput:>5.2f}x" if a.throughput else "   n/a"
            lines.append(f"  {_label(torua, durability):<36}{t.concurrency:>4} {_cells(t)} | {_label(anchor, durability):<36}{_cells(a)} | {ratio}")
    paired = {n for _, t, a in PAIRS for n in (t, a) if any((t, c) in by and (a, c) in by for c in concurrencies)}
    alone = [r for r in results if r.name not in paired]
    if alone:
        lines += ["", "Without a partner in this run:"]
        lines += [f"  {_label(r.name, durability):<36}{r.concurrency:>4} {_cells(r)}" for r in alone]
    failed = [r for r in results if r.errors]
    if failed:
        lines += ["", "ERRORS:"]
        lines += [f"  {r.name} c={r.concurrency}: {r.errors}/{r.requests} failed; first: {r.first_error}" for r in failed]
    return "\n".join(lines)


def _filesystem(path: Path) -> str:
    """The file system type under `path`: fsync costs nothing on tmpfs, which would make durable figures moot."""
    import psutil

    best = None
    for part in psutil.disk_partitions(all=True):
        if str(path.resolve()).startswith(part.mountpoint) and (best is None or len(part.mountpoint) > len(best.mountpoint)):
            best = part
    return f"{best.fstype} on {best.mountpoint}" if best else "?"


def machine_info(nats_server_version: str, workdir: Path) -> dict:
    from importlib.metadata import version

    from torua import __version__

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torua": __version__,
        "nats_server": nats_server_version,
        "nats_py": version("nats-py"),
        "aiohttp": version("aiohttp"),
        "workdir_filesystem": _filesystem(workdir),
    }


def write_json(path: Path, results: list[Result], **fields) -> None:
    doc = {**fields, "results": [asdict(r) for r in results], "ratios": ratios(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def ratio(torua: float, anchor: float) -> float | None:
    """Torua's figure over its anchor's, rounded; None without an anchor figure."""
    return round(torua / anchor, 3) if anchor else None


def meets(target: tuple[str, float], value: float | None) -> bool | None:
    """Whether a ratio meets `target` (("higher", t): at least t; ("lower", t): at most t); None: no ratio.

    >>> meets(("higher", 0.3), 0.31), meets(("lower", 3.0), 3.5), meets(("lower", 3.0), None)
    (True, False, None)
    """
    if value is None:
        return None
    way, limit = target
    return value >= limit if way == "higher" else value <= limit
