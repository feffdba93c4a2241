"""`torua bench` as a user runs it: every figure and ratio in the JSON, and not one
process it started left behind (after a normal run and after Ctrl-C). No timing thresholds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from torua.cli.up import torua_command

ANCHORS = ["nats-echo", "aiohttp-echo-get", "aiohttp-echo-put", "jskv-get", "jskv-put"]
TORUA = ["http-get", "http-put", "nats-api-get", "nats-api-put", "client-get", "client-put"]
PAIRS = [
    ("http-get", "aiohttp-echo-get"), ("client-get", "nats-echo"), ("nats-api-get", "nats-echo"),
    ("http-get", "jskv-get"), ("nats-api-get", "jskv-get"), ("client-get", "jskv-get"),
    ("http-put", "jskv-put"), ("nats-api-put", "jskv-put"), ("client-put", "jskv-put"), ("http-put", "aiohttp-echo-put"),
]
DEADLINE = 240


def run_bench(tmp_path: Path, args: list[str], interrupt_after: str | None = None) -> tuple[int, str, dict[psutil.Process, str]]:
    """Run `torua bench`, remembering every descendant seen while it ran (with its command line);
    SIGINT it once `interrupt_after` is printed."""
    out_path = tmp_path / "bench.out"
    seen: dict[tuple[int, float], tuple[psutil.Process, str]] = {}
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(torua_command() + ["bench"] + args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path)
    interrupted = False
    try:
        deadline = time.monotonic() + DEADLINE
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:  # the latest command line: one first seen between fork and exec is still its parent's
                        seen[(child.pid, child.create_time())] = (child, " ".join(child.cmdline()))
                    except psutil.Error:
                        pass  # gone already
            except psutil.Error:
                pass
            if interrupt_after and not interrupted and interrupt_after in out_path.read_text(errors="replace"):
                proc.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.2)
        assert proc.poll() is not None, f"torua bench still running after {DEADLINE}s:\n{out_path.read_text(errors='replace')[-5000:]}"
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(10)
    return proc.returncode, out_path.read_text(errors="replace"), dict(seen.values())


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_nothing_left(seen: dict[psutil.Process, str], marks: list[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in seen):
        time.sleep(0.1)
    assert not [line for p, line in seen.items() if alive(p)], "processes started by the bench are still running"
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if p.pid != os.getpid() and any(m in line for m in marks):
            left.append(line)
    assert not left, f"processes mentioning the bench's dir or NATS are still running: {left}"


def check_results(doc: dict, names: list[str], concurrencies: list[int]) -> None:
    by = {(r["name"], r["concurrency"]): r for r in doc["results"]}
    for name in names:
        for c in concurrencies:
            r = by.get((name, c))
            assert r is not None, f"no result for {name} at concurrency {c}"
            assert r["errors"] == 0, r
            assert r["requests"] == 50
            assert r["throughput"] > 0, r
            assert 0 < r["p50_ms"] <= r["p99_ms"], r
    ratios = {(x["torua"], x["anchor"], x["concurrency"]): x for x in doc["ratios"]}
    for torua, anchor in PAIRS:
        if torua in names and anchor in names:
            for c in concurrencies:
                assert ratios[(torua, anchor, c)]["throughput_ratio"] > 0
    assert doc["machine"]["cpu_count"] and doc["machine"]["python"]
    assert doc["settings"]["commit"] in ("relaxed", "durable")


def test_bench_measures_everything_and_leaves_nothing(tmp_path):
    out_json = tmp_path / "out.json"
    code, output, seen = run_bench(tmp_path, ["--requests", "50", "--concurrency", "1,4", "--json", str(out_json)])
    assert code == 0, output[-5000:]
    doc = json.loads(out_json.read_text())
    check_results(doc, ANCHORS + TORUA, [1, 4])
    assert len(doc["ratios"]) == len(PAIRS) * 2
    for line in ("HTTP GET", "torua.Client GET", "NATS API PUT [commit=relaxed]", "JetStream KV put [no fsync]"):
        assert line in output
    lines = list(seen.values())
    for started in ("nats-server", "torua up", "torua coordinator", "torua node", "torua gateway", doc["workdir"]):
        assert any(started in line for line in lines), (started, lines)
    assert not Path(doc["workdir"]).exists()
    assert_nothing_left(seen, [doc["workdir"], doc["nats_url"]])


def test_anchors_alone_with_durable_jetstream(tmp_path):
    """Without Torua in the selection no cluster is started; durable runs JetStream with sync_interval: always."""
    out_json = tmp_path / "out.json"
    code, output, seen = run_bench(tmp_path, ["--requests", "50", "--concurrency", "1,4", "--commit", "durable",
                                              "--only", "echo,jskv", "--json", str(out_json)])
    assert code == 0, output[-5000:]
    doc = json.loads(out_json.read_text())
    check_results(doc, ANCHORS, [1, 4])
    assert {r["name"] for r in doc["results"]} == set(ANCHORS)
    assert doc["js_nats_url"] != doc["nats_url"]
    assert "sync_interval: always" in doc["durability"]["jetstream"]
    assert not any("torua up" in line for line in seen.values()), list(seen.values())
    assert sum("nats-server" in line for line in seen.values()) == 2
    assert_nothing_left(seen, [doc["workdir"], doc["nats_url"], doc["js_nats_url"]])


def test_ctrl_c_stops_everything(tmp_path):
    code, output, seen = run_bench(tmp_path, ["--requests", "50000", "--concurrency", "1", "--json", str(tmp_path / "x.json")],
                                   interrupt_after="Torua ready at")
    assert code == 130, output[-5000:]
    assert "Torua ready at" in output
    assert any("torua gateway" in line for line in seen.values()), list(seen.values())
    workdir = output.split("work dir ", 1)[1].split()[0]
    nats_url = output.split("nats-server at ", 1)[1].split()[0]
    assert not Path(workdir).exists() and "logs are kept" not in output  # a Ctrl-C keeps nothing
    assert not (tmp_path / "x.json").exists()
    assert_nothing_left(seen, [workdir, nats_url])


def test_failover_bench_reports_every_round(tmp_path):
    """`torua bench --failover --failover-rounds 2` kills n1, waits for it to be back in
    sync, then kills n2; every shard each led must accept writes again."""
    import json as _json
    import subprocess as _subprocess

    from torua.cli.up import torua_command

    out = tmp_path / "failover.json"
    done = _subprocess.run(torua_command() + ["bench", "--failover", "--failover-rounds", "2", "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = _json.loads(out.read_text())
    assert [r["victim"] for r in report["rounds"]] == ["n1", "n2"]
    for r in report["rounds"]:
        assert r["shards"] > 0 and r["recovered"] == r["shards"], r
        assert r["max_s"] is not None and r["max_s"] > 0
    assert "worst" in done.stdout


def test_graph_bench_reports_every_figure_beside_its_anchor(tmp_path):
    """`torua bench --graph`, tiny: every figure with its Kuzu (or KV GET) anchor, a ratio and
    a verdict, recall for both, every node's RSS; nothing left running. No timing thresholds."""
    out_json = tmp_path / "graph.json"
    code, output, seen = run_bench(tmp_path, ["--graph", "--graph-vertices", "300", "--graph-edges", "1200", "--graph-vectors", "400",
                                              "--graph-queries", "8", "--json", str(out_json)])
    assert code == 0, output[-5000:]
    doc = json.loads(out_json.read_text())
    figures = {f["figure"]: f for f in doc["figures"]}
    assert set(figures) == {"import", "traverse_p50", "traverse_p99", "vector_p50", "get"}
    for f in figures.values():
        assert f["torua"] > 0 and f["anchor"] > 0, f
        assert f["ratio"] == round(f["torua"] / f["anchor"], 3), f
        assert isinstance(f["met"], bool) and f["target"].startswith((">=", "<=")), f
    for side in (doc["torua"], doc["anchor"]):
        assert side["import"]["elements"] == 1500 and side["reimport"]["elements"] == 1500
        assert 0 <= side["vector"]["recall"] <= 1
    assert doc["anchor"]["reimport"]["new"] == 0  # the same files again change nothing
    assert doc["torua"]["counts"]["vertices"] == 300 and doc["torua"]["counts"]["edges"] == 1200, doc["torua"]["counts"]
    assert doc["torua"]["import"]["errors"] == doc["torua"]["reimport"]["errors"] == 0
    assert len(doc["nodes"]) == 3 and sum(n["shards"] for n in doc["nodes"]) == 16
    assert all(n["rss_bytes"] > 0 for n in doc["nodes"])
    for label in ("bulk import (idempotent)", "2-hop traversal p50", "2-hop traversal p99", "vector top 10 p50",
                  "vertex GET vs KV GET", "vector recall@10", "node RSS with the 16 shard databases open"):
        assert label in output, label
    lines = list(seen.values())
    for started in ("nats-server", "torua up", "torua node", "torua.bench.kuzu_anchor"):
        assert any(started in line for line in lines), (started, lines)
    assert not Path(doc["workdir"]).exists()
    assert_nothing_left(seen, [doc["workdir"], doc["nats_url"]])


def test_rag_bench_reports_every_figure_beside_its_anchor(tmp_path):
    """`torua bench --rag`, tiny (6 documents, twice): ingestion beside the pipeline in one process, delete beside
    ingest, the community run, every mode's p50/p99 at each concurrency with hybrid beside
    naive; nothing left running. No timing thresholds."""
    out_json = tmp_path / "rag.json"
    code, output, seen = run_bench(tmp_path, ["--rag", "--rag-documents", "6", "--rag-copies", "2", "--rag-queries", "4", "--rag-deletes", "2",
                                              "--rag-concurrency", "1,2", "--json", str(out_json)])
    assert code == 0, output[-5000:]
    doc = json.loads(out_json.read_text())
    figures = [(f["figure"], f["label"]) for f in doc["figures"]]
    assert [f for f, _ in figures] == ["ingest", "delete", "hybrid", "hybrid"], figures
    for f in doc["figures"]:
        assert f["torua"] > 0 and f["anchor"] > 0 and f["ratio"] == round(f["torua"] / f["anchor"], 3) and isinstance(f["met"], bool), f
    assert doc["anchor"]["documents"] == doc["torua"]["ingest"]["documents"] == doc["settings"]["documents"] == 12  # 6, twice
    assert doc["settings"]["copies"] == 2 and "(2 copies of each)" in output
    assert doc["torua"]["delete"]["documents"] == 2
    assert doc["torua"]["communities"]["communities"] >= 1 and doc["torua"]["counts"]["vertices"] > 12
    assert {(q["mode"], q["concurrency"]) for q in doc["torua"]["queries"]} == {(m, c) for m in ("naive", "local", "global", "hybrid") for c in (1, 2)}
    assert all(q["errors"] == 0 and q["p50_ms"] > 0 for q in doc["torua"]["queries"])
    for label in ("ingestion documents/s", "delete one document", "hybrid query p50 at c=1", "community run:"):
        assert label in output, label
    lines = list(seen.values())
    for started in ("nats-server", "torua up", "torua node", "torua worker", "torua.bench.rag_anchor"):
        assert any(started in line for line in lines), (started, lines)
    assert not Path(doc["workdir"]).exists()
    assert_nothing_left(seen, [doc["workdir"], doc["nats_url"]])
