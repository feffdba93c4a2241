"""Edges across shards, on a node (docs/design/graph.md, section 4): the steps an
edge's out-half owner (the primary of src's shard, A) drives, what the primary of
dst's shard (B) answers, and the repair every primary runs. The decisions are pure
(torua.graph.edges); this module reads the rows, logs what they say through
`Node.write` and sends the messages.

- A put: A logs the out-half pending (token t), asks B to attach (`edge.attach`), and
  logs it committed if it is still pending t; on `missing` it removes it (404 naming
  dst); when B does not answer in ``--graph-peer-timeout`` the half stays pending for
  repair and the caller gets `timeout` (the outcome is unknown). Once committed, A
  tells B (`edge.confirm`), so that an import leaves nothing for repair to check.
- A delete: removing, `edge.detach` to B, then the out-half goes.
- A vertex delete's outbox tasks (`edge.detach` to B, `edge.drop` to A) are sent at
  once and by repair until acknowledged, then `graph.outbox.done` is logged.
- Repair, on every primary, at promotion and every ``--graph-repair-interval``:
  pending and removing out-halves are driven on, outbox tasks sent, and each in-half
  not confirmed yet is checked with A (`edge.check`).

Messages go in batches (one per peer shard, at most `BATCH` halves) to the primary of
the peer shard, found with the shard map (`torua.routing`). Every one is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torua.graph import edges as decide
from torua.graph import rules
from torua.graph.rows import ATTACHED, ENGINE, EdgeRow, GraphRows, GraphSettings
from torua.node import graph_checks as checks
from torua.node.detached import Detached
from torua.node.graph_catalog import SWEEP_SECONDS, catalog_uids, orphaned
from torua.node.key_locks import KeyLocks
from torua.node.node_mux import NodeMux
from torua.node.peer_lanes import BATCH, PeerLanes
from torua.protocol.errors import ToruaError
from torua.protocol.messages import EdgeHalf, GraphRef, GraphReply, GraphRequest
from torua.protocol.vocabulary import GraphOp, HalfState
from torua.routing import MapCache, ShardRouter
from torua.storage.operations import GraphDrop, GraphEnsure, Operation, OutboxDone

if TYPE_CHECKING:
    from torua.node.service import Node

log = logging.getLogger("torua.node.graph")

# BATCH (torua.node.peer_lanes): halves per message between primaries, and per repair step
REPAIR_ROWS = 5000  # rows one repair round visits per shard at most (the next round goes on)


@dataclass(frozen=True)
class EdgeSpec:
    """An edge as a request names it, checked: properties as canonical JSON."""

    src: str
    type: str
    dst: str
    properties: str = "{}"
    weight: float = 1.0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.src, self.type, self.dst)


def edge_lock(uid: str, key: tuple[str, str, str]) -> tuple[str, ...]:
    return ("e", uid, *key)


def vertex_lock(uid: str, id: str) -> tuple[str, str, str]:
    return ("v", uid, id)


def ref_of(settings: GraphSettings) -> GraphRef:
    return GraphRef(settings.name, settings.uid, settings.vector_dim, settings.metric, list(settings.text_properties))  # type: ignore[arg-type]


def ensure_ops(rows: GraphRows, graph: GraphRef) -> list[Operation]:
    if rows.graph(graph.uid) is not None:
        return []
    return [GraphEnsure(graph.uid, graph.name, graph.vector_dim, str(graph.metric), list(graph.text_properties))]


def _committed(row: EdgeRow | None, token: int) -> bool:
    return row is not None and row.out_state == "committed" and row.out_token == token


def _json(text: str) -> dict[str, Any]:
    if text == "{}":
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


class EdgeWork:
    def __init__(self, node: "Node", locks: KeyLocks) -> None:
        self.node = node
        self.locks = locks
        self.maps: MapCache | None = None
        self.router: ShardRouter | None = None
        self._kick = asyncio.Event()
        self.nc: Any = None
        self._swept = -math.inf  # when the graphs were last compared with the catalog (monotonic)
        self.on_sweep: Any = None  # async (shard_id, rows) -> None, run at each sweep on every primary (GraphRAG's support repair)
        self.mux = NodeMux(self._node_of, self._send_node, self._send)
        self.detached = Detached()  # B: the incarnations it was told to detach (never attached again)
        self.lanes = PeerLanes(self.mux.send, node.tasks.spawn)

    # ------------------------------------------------------------- lifecycle

    async def start(self, nc: Any) -> None:
        """Route to other shards' primaries from now on; the shard map is read in the
        background (a JetStream read may take its timeout: the node serves meanwhile)."""
        self.nc = nc
        self.maps = MapCache(nc)
        self.router = ShardRouter(nc, self.maps)
        self.node.tasks.spawn(self.maps.start())
        self.node.tasks.spawn(self._repair_loop())

    async def stop(self) -> None:
        if self.maps is not None:
            await self.maps.stop()

    def kick(self) -> None:
        """Run a repair round now (a vertex delete's outbox, a promotion)."""
        self._kick.set()

    # ----------------------------------------------------------- peer calls

    async def ask(self, shard_id: int, op: GraphOp, graph: GraphRef, halves: Sequence[EdgeHalf], timeout: float) -> list[EdgeHalf]:
        """Send `halves` to the primary of `shard_id`; its answer, one half per half asked.
        `ToruaError` (timeout, unavailable, or the peer's refusal) otherwise.

        Halves for one peer shard, op and graph share messages (`PeerLanes`): while
        `IN_FLIGHT` messages to it are on their way, what other callers ask joins the
        next one (up to `BATCH` halves). An import's shards, each asking every peer
        shard for a few dozen halves, then send a few large messages, and the peer
        logs each in one write, instead of one message and one write per caller."""
        if self.router is None:
            raise ToruaError("unavailable", "this node is not connected to the cluster")
        answers: list[EdgeHalf] = []
        for start in range(0, len(halves), BATCH):
            answers.extend(await self.lanes.ask(shard_id, op, graph, list(halves[start : start + BATCH]), timeout))
        return answers

    async def _send(self, shard_id: int, op: GraphOp, graph: GraphRef, halves: list[EdgeHalf], timeout: float) -> list[EdgeHalf]:
        """One message to the primary of `shard_id` (what `PeerLanes` sends)."""
        if self.router is None:
            raise ToruaError("unavailable", "this node is not connected to the cluster")
        answer: GraphReply = await self.router.call(
            shard_id, lambda epoch: GraphRequest(op, shard_id, epoch, graph, halves=halves), timeout, kind="graph", reply_type=GraphReply
        )
        if not answer.ok:
            raise ToruaError(answer.error_code or "internal", f"shard {shard_id}: {answer.error_message}")
        if len(answer.halves) != len(halves):
            raise ToruaError("internal", f"shard {shard_id} answered {len(answer.halves)} halves for {len(halves)}")
        return list(answer.halves)

    def _node_of(self, shard_id: int) -> str | None:
        """The node that leads `shard_id` by the shard map as this node last read it."""
        current = self.maps.current if self.maps is not None else None
        if current is None or not 0 <= shard_id < current.num_shards:
            return None
        return current.entry(shard_id).primary

    async def _send_node(self, shards: list[int], op: GraphOp, graph: GraphRef, halves: list[EdgeHalf], timeout: float) -> tuple[list[EdgeHalf], dict[int, ToruaError]]:
        """One message to the node that leads `shards` (what `NodeMux` sends): an answer
        per half, and the error of each shard that node did not serve."""
        if self.router is None:
            raise ToruaError("unavailable", "this node is not connected to the cluster")
        answer: GraphReply = await self.router.call(
            shards[0], lambda epoch: GraphRequest(op, shards[0], epoch, graph, halves=halves, shards=shards), timeout, kind="graph", reply_type=GraphReply
        )
        if not answer.ok:
            raise ToruaError(answer.error_code or "internal", f"shards {shards}: {answer.error_message}")
        if len(answer.halves) != len(halves):
            raise ToruaError("internal", f"shards {shards} answered {len(answer.halves)} halves for {len(halves)}")
        return list(answer.halves), {p.shard: ToruaError(p.error_code, p.error_message) for p in answer.parts if p.error_code}

    def _peer_timeout(self) -> float:
        return self.node.config.graph_peer_timeout

    def _shard_of(self, graph: GraphRef | GraphSettings, id: str) -> int:
        return rules.vertex_shard(graph.name, id, self.node.num_shards)

    # ------------------------------------------------------------ A: put

    async def put_many(self, shard_id: int, graph: GraphRef, rows: GraphRows, specs: Sequence[EdgeSpec]) -> list[ToruaError | None]:
        """Put edges whose src is on `shard_id` (this node its primary) and whose dst is
        on another shard: each one's outcome (None: done)."""
        uid = graph.uid
        outcomes: list[ToruaError | None] = [None] * len(specs)
        last: dict[tuple[str, str, str], int] = {}
        for i, spec in enumerate(specs):
            last[spec.key] = i  # a batch naming an edge twice: the last one wins
        chosen = sorted(last.values())
        async with self.locks.hold(*(edge_lock(uid, specs[i].key) for i in chosen)):
            todo, fresh = chosen, False
            for _ in range(2):  # the second round: edges whose committed incarnation B no longer holds
                started: list[tuple[int, int]] = []  # (spec index, token)
                verify: list[tuple[int, int]] = []  # committed as asked: B is asked to attach that incarnation again
                async with self.locks.hold(*{vertex_lock(uid, specs[i].src) for i in todo}):
                    present = rows.existing(uid, [specs[i].src for i in todo])
                    stored = rows.edges_by_key(uid, (specs[i].key for i in todo))
                    ops: list[Operation] = []
                    wanted: list[int] = []
                    for i in todo:
                        spec = specs[i]
                        if spec.src not in present:
                            outcomes[i] = ToruaError("not_found", f"vertex {spec.src!r} (src) is not in graph {graph.name!r}")
                            continue
                        row = stored.get(spec.key)
                        mine = decide.put_ops(uid, *spec.key, spec.properties, spec.weight, None if fresh else row)
                        if mine:
                            ops.extend(mine)
                            wanted.append(i)
                        elif row is not None:
                            verify.append((i, row.out_token))
                    if ops:
                        before = ensure_ops(rows, graph)
                        seq = await self.node.write(shard_id, [*before, *ops], "graph edge.put")
                        first = seq - len(ops) + 1  # one op each, consecutive seqs in one transaction
                        started = [(i, first + n) for n, i in enumerate(wanted)]
                if not started and not verify:
                    break
                todo = await self._attach_and_settle(
                    shard_id, graph, rows, [(specs[i], token, i) for i, token in started + verify], outcomes, verifying={i for i, _ in verify}
                )
                if not todo:
                    break
                fresh = True
        for i, spec in enumerate(specs):
            if last[spec.key] != i:
                outcomes[i] = outcomes[last[spec.key]]
        return outcomes

    async def _attach_and_settle(
        self, shard_id: int, graph: GraphRef, rows: GraphRows, started: Sequence[tuple[EdgeSpec, int, Any]], outcomes: list[Any] | None = None,
        verifying: Collection[int] = (),
    ) -> list[int]:
        """Ask each dst's shard to attach, then commit or remove each half (holding the
        edges' locks). Items whose index is in `verifying` are committed here already:
        those B no longer holds are returned (their put starts a new incarnation)."""
        uid = graph.uid
        by_shard: dict[int, list[tuple[EdgeSpec, int, Any]]] = defaultdict(list)
        for item in started:
            by_shard[self._shard_of(graph, item[0].dst)].append(item)

        async def one(peer: int, items: list[tuple[EdgeSpec, int, Any]]) -> list[tuple[EdgeSpec, int, Any, HalfState | ToruaError]]:
            # a put of an edge committed as asked asks B whether it still holds that incarnation (`committed`: never attached anew)
            halves = [
                EdgeHalf(s.src, s.type, s.dst, token, HalfState.COMMITTED if i in verifying else HalfState.PENDING, _json(s.properties), s.weight)
                for s, token, i in items
            ]
            try:
                answers = await self.ask(peer, GraphOp.EDGE_ATTACH, graph, halves, self._peer_timeout())
            except ToruaError as exc:
                return [(s, t, i, exc) for s, t, i in items]
            return [(s, t, i, a.state) for (s, t, i), a in zip(items, answers)]

        results = [r for part in await asyncio.gather(*(one(p, items) for p, items in by_shard.items())) for r in part]
        answered = [r for r in results if not isinstance(r[3], ToruaError)]
        again: list[int] = []
        async with self.locks.hold(*{vertex_lock(uid, r[0].src) for r in answered}):
            present = rows.existing(uid, [r[0].src for r in answered])
            stored = rows.edges_by_key(uid, (r[0].key for r in answered))
            ops: list[Operation] = []
            for spec, token, index, answer in results:
                if index in verifying and not isinstance(answer, ToruaError) and decide.needs_new_incarnation(stored.get(spec.key), token, answer):
                    again.append(index)
                    continue
                if isinstance(answer, ToruaError):
                    error: ToruaError | None = ToruaError(
                        "timeout" if answer.code in ("timeout", "unavailable", "moved", "stale_epoch") else answer.code,
                        f"the shard of {spec.dst!r} did not take the edge ({answer.message}); it is pending and completes or goes by repair",
                    )
                else:
                    outcome = decide.after_attach(uid, stored.get(spec.key), token, answer, spec.src in present)
                    ops.extend(outcome.ops)
                    error = None
                    if outcome.error_code == "not_found":
                        id = spec.dst if outcome.missing == "dst" else spec.src
                        error = ToruaError("not_found", f"vertex {id!r} ({outcome.missing}) is not in graph {graph.name!r}")
                    elif outcome.error_code:
                        error = ToruaError("unavailable", f"the shard of {spec.dst!r} holds a newer version of this edge; repair settles it: try again")
                if outcomes is not None and index is not None:
                    outcomes[index] = error
            if ops:
                await self.node.write(shard_id, ops, "graph edge.put")
                stored = rows.edges_by_key(uid, (r[0].key for r in answered))
            committed = [
                (spec, token) for spec, token, index, answer in results
                if not isinstance(answer, ToruaError) and index not in again and _committed(stored.get(spec.key), token)
            ]
        await self._confirm(graph, committed)
        return again

    async def _confirm(self, graph: GraphRef, committed: Sequence[tuple[EdgeSpec, int]]) -> None:
        """Tell each dst's shard which incarnations A committed (`edge.confirm`), so that
        it confirms their in-halves now rather than by repair's `edge.check`. Best
        effort: what does not arrive, repair settles."""
        by_shard: dict[int, list[EdgeHalf]] = defaultdict(list)
        for spec, token in committed:
            by_shard[self._shard_of(graph, spec.dst)].append(EdgeHalf(spec.src, spec.type, spec.dst, token, HalfState.COMMITTED))

        async def one(peer: int, halves: list[EdgeHalf]) -> None:
            try:
                await self.ask(peer, GraphOp.EDGE_CONFIRM, graph, halves, self._peer_timeout())
            except ToruaError as exc:
                log.debug("edge.confirm to shard %d not delivered (repair checks those in-halves): %s", peer, exc.message)

        await asyncio.gather(*(one(p, halves) for p, halves in by_shard.items()))

    # ------------------------------------------------------------ A: delete

    async def delete(self, shard_id: int, graph: GraphRef, rows: GraphRows, spec: EdgeSpec) -> None:
        uid = graph.uid
        async with self.locks.hold(edge_lock(uid, spec.key)):
            async with self.locks.hold(vertex_lock(uid, spec.src)):
                row = rows.edge(uid, *spec.key)
                ops = decide.delete_ops(uid, row)
                if ops:
                    await self.node.write(shard_id, ops, "graph edge.delete")
            if row is None or row.out_state is None or row.in_state is not None:
                return  # nothing here, or both halves were here and are gone
            await self._detach_and_settle(shard_id, graph, rows, [(row, row.out_token)], raise_errors=True)

    async def _detach_and_settle(self, shard_id: int, graph: GraphRef, rows: GraphRows, removing: Sequence[tuple[EdgeRow, int]], raise_errors: bool = False) -> None:
        uid = graph.uid
        by_shard: dict[int, list[tuple[EdgeRow, int]]] = defaultdict(list)
        for row, token in removing:
            by_shard[self._shard_of(graph, row.dst)].append((row, token))
        done: list[tuple[EdgeRow, int]] = []
        failure: ToruaError | None = None
        for peer, items in by_shard.items():
            try:
                await self.ask(peer, GraphOp.EDGE_DETACH, graph, [EdgeHalf(r.src, r.type, r.dst, t) for r, t in items], self._peer_timeout())
            except ToruaError as exc:
                failure = exc
                continue
            done.extend(items)
        async with self.locks.hold(*{vertex_lock(uid, r.src) for r, _ in done}):
            stored = rows.edges_by_key(uid, (r.key for r, _ in done))
            ops = [op for r, t in done for op in decide.after_detach(uid, stored.get(r.key), t)]
            if ops:
                await self.node.write(shard_id, ops, "graph edge.delete")
        if failure is not None and raise_errors:
            raise ToruaError("timeout", f"the shard of the edge's dst did not answer ({failure.message}); the edge is gone from its src and repair finishes the rest")

    # ------------------------------------------------- answers to other primaries

    def _writing(self, request: GraphRequest) -> tuple[Any, GraphRows, bool]:
        store = self.node.admit(request.shard_id, f"graph {request.op}", writes=True, meter=False)
        rows = store.engine(ENGINE)
        settings = rows.graph(request.graph.uid)
        return store, rows, settings is not None and settings.dropped

    def _halves(self, request: GraphRequest, end: str) -> list[EdgeHalf]:
        if len(request.halves) > BATCH:
            raise ToruaError("bad_request", f"at most {BATCH} halves at once")
        for half in request.halves:
            checks.vertex_in_shard(request.graph.name, getattr(half, end), request.shard_id, self.node.num_shards, end)
            rules.validate_vertex_id(half.src if end == "dst" else half.dst, "src" if end == "dst" else "dst")
            rules.validate_type(half.type)
            if half.token < 1:
                raise ToruaError("bad_request", "an edge's token is a seq of its src's shard (>= 1)")
        return list(request.halves)

    async def attach(self, request: GraphRequest) -> GraphReply:
        """B: hold the in-halves whose dst exists here (`missing` otherwise); those asked
        about as `committed` only if held already (`absent` otherwise)."""
        halves = self._halves(request, "dst")
        store, rows, dropped = self._writing(request)
        uid = request.graph.uid
        limit = self.node.config.graph_max_properties_bytes
        props = [checks.canonical_properties(h.properties, limit) for h in halves]
        weights = [rules.validate_weight(h.weight) for h in halves]
        async with self.locks.hold(*{vertex_lock(uid, h.dst) for h in halves}):
            present = set() if dropped else rows.existing(uid, [h.dst for h in halves])
            keys = [(h.src, h.type, h.dst) for h in halves]
            stored, drops = rows.edges_by_key(uid, keys), rows.dropped_tokens(uid, keys)
            states: list[HalfState] = []
            ops: list[Operation] = []
            for half, key, p, w in zip(halves, keys, props, weights):
                held_only = half.state == HalfState.COMMITTED
                detached = self.detached.token(request.shard_id, uid, key)
                state, mine = decide.on_attach(uid, key, stored.get(key), half.dst in present, half.token, p, w, drops.get(key, 0), held_only, detached)
                states.append(state)
                ops.extend(mine)
            if ops:
                await self.node.write(request.shard_id, [*ensure_ops(rows, request.graph), *ops], "graph edge.attach")
        return GraphReply(True, self.node.epoch, halves=[EdgeHalf(h.src, h.type, h.dst, h.token, s) for h, s in zip(halves, states)], seq=store.last_seq())

    async def confirm(self, request: GraphRequest) -> GraphReply:
        """B: A committed these incarnations; confirm the in-halves that are still them."""
        return await self._each_half(request, "dst", decide.on_confirm)

    async def detach(self, request: GraphRequest) -> GraphReply:
        """B: remove the in-halves of these incarnations (or older), and attach none of
        them again (`torua.node.detached`)."""
        return await self._each_half(request, "dst", decide.on_detach, remember=True)

    async def drop(self, request: GraphRequest) -> GraphReply:
        """A: dst is gone; remove the out-halves of these incarnations (or older)."""
        return await self._each_half(request, "src", decide.on_drop)

    async def _each_half(self, request: GraphRequest, end: str, decision: Any, remember: bool = False) -> GraphReply:
        halves = self._halves(request, end)
        store, rows, _ = self._writing(request)
        uid = request.graph.uid
        async with self.locks.hold(*{vertex_lock(uid, getattr(h, end)) for h in halves}):
            if remember:
                self.detached.record(request.shard_id, uid, (((h.src, h.type, h.dst), h.token) for h in halves))
            stored = rows.edges_by_key(uid, ((h.src, h.type, h.dst) for h in halves))
            ops = [op for h in halves for op in decision(uid, stored.get((h.src, h.type, h.dst)), h.token)]
            if ops:
                await self.node.write(request.shard_id, ops, f"graph {request.op}")
        return GraphReply(True, self.node.epoch, halves=[EdgeHalf(h.src, h.type, h.dst, h.token, HalfState.DONE) for h in halves], seq=store.last_seq())

    async def check(self, request: GraphRequest) -> GraphReply:
        """A: the state and token of its out-halves (only its primary answers)."""
        halves = self._halves(request, "src")
        store = self.node.admit(request.shard_id, f"graph {request.op}", writes=False)
        rows = store.engine(ENGINE)
        answers = []
        stored = rows.edges_by_key(request.graph.uid, ((h.src, h.type, h.dst) for h in halves))
        for h in halves:
            row = stored.get((h.src, h.type, h.dst))
            state, token = decide.check_answer(row)
            answers.append(EdgeHalf(h.src, h.type, h.dst, token, state, _json(row.properties) if row else {}, row.weight if row else 1.0))
        return GraphReply(True, self.node.epoch, halves=answers)

    # ------------------------------------------------------------------ repair

    async def _repair_loop(self) -> None:
        stopping = self.node.tasks.stopping
        while not stopping.is_set():
            try:
                await self.repair_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("graph repair round failed; trying again later")
            self._kick.clear()
            waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._kick.wait())]
            try:
                await asyncio.wait(waits, timeout=self.node.config.graph_repair_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def repair_all(self) -> None:
        """One round on every shard this node leads that holds graph data; now and then,
        drop the graphs the catalog no longer has."""
        sweep = time.monotonic() - self._swept >= SWEEP_SECONDS
        if sweep:
            self._swept = time.monotonic()
        for holding in list(self.node.holdings.values()):
            store = holding.store
            if store is None or holding.role != "primary" or store.closed:
                continue
            rows = store.engine(ENGINE)
            if not rows.holds_data():
                continue
            try:
                if sweep:
                    await self.drop_orphaned(holding.shard_id, rows)
                    if self.on_sweep is not None:
                        await self.on_sweep(holding.shard_id, rows)
                await self.repair(holding.shard_id, rows)
            except ToruaError as exc:
                log.info("graph repair of shard %d stopped: %s", holding.shard_id, exc.message)

    async def drop_orphaned(self, shard_id: int, rows: GraphRows) -> None:
        """Log `graph.drop` of every graph held here that the catalog no longer has."""
        held = [(g.name, g.uid) for g in rows.graphs() if not g.dropped]
        if not held or self.nc is None:
            return
        catalog = await catalog_uids(self.nc, [name for name, _ in held])
        if catalog is None:
            return
        for uid in orphaned(held, catalog):
            log.info("shard %d: graph uid %s is no longer in the catalog; dropping its rows", shard_id, uid)
            await self.node.write(shard_id, [GraphDrop(uid)], "graph drop")

    async def repair(self, shard_id: int, rows: GraphRows) -> None:
        """Drive what is not known to agree on one shard: pending and removing
        out-halves, attached in-halves, outbox tasks."""
        if not self.node.num_shards:
            return
        graphs = {g.uid: g for g in rows.graphs() if not g.dropped}
        visited = 0
        after: tuple[str, str, str, str] | None = None
        while visited < REPAIR_ROWS:
            page = rows.unsettled(limit=BATCH, after=after)
            if not page:
                break
            visited += len(page)
            after = (page[-1][0], *page[-1][1].key)
            by_graph: dict[str, list[EdgeRow]] = defaultdict(list)
            for uid, row in page:
                if uid in graphs:
                    by_graph[uid].append(row)
            for uid, unsettled in by_graph.items():
                await self._repair_rows(shard_id, ref_of(graphs[uid]), rows, unsettled)
        await self._send_outbox(shard_id, rows, graphs)

    async def _repair_rows(self, shard_id: int, graph: GraphRef, rows: GraphRows, unsettled: list[EdgeRow]) -> None:
        uid = graph.uid
        pending = [r for r in unsettled if r.out_state == "pending" and r.in_state is None]
        removing = [r for r in unsettled if r.out_state == "removing" and r.in_state is None]
        attached = [r for r in unsettled if r.in_state == ATTACHED and r.out_state is None]
        if pending or removing:
            async with self.locks.hold(*(edge_lock(uid, r.key) for r in pending + removing)):
                stored = rows.edges_by_key(uid, (r.key for r in pending + removing))
                current = [stored.get(r.key) for r in pending + removing]
                still_pending = [(EdgeSpec(r.src, r.type, r.dst, r.properties, r.weight), r.out_token, None) for r in current if r and r.out_state == "pending" and r.in_state is None]
                still_removing = [(r, r.out_token) for r in current if r and r.out_state == "removing" and r.in_state is None]
                if still_pending:
                    await self._attach_and_settle(shard_id, graph, rows, still_pending)
                if still_removing:
                    await self._detach_and_settle(shard_id, graph, rows, still_removing)
        if attached:
            await self._check_attached(shard_id, graph, rows, attached)

    async def _check_attached(self, shard_id: int, graph: GraphRef, rows: GraphRows, attached: list[EdgeRow]) -> None:
        uid = graph.uid
        by_shard: dict[int, list[EdgeRow]] = defaultdict(list)
        for row in attached:
            by_shard[self._shard_of(graph, row.src)].append(row)
        for peer, items in by_shard.items():
            try:
                answers = await self.ask(peer, GraphOp.EDGE_CHECK, graph, [EdgeHalf(r.src, r.type, r.dst, r.in_token) for r in items], self._peer_timeout())
            except ToruaError as exc:
                log.debug("shard %d: cannot check in-halves with shard %d: %s", shard_id, peer, exc.message)
                continue
            limit = self.node.config.graph_max_properties_bytes
            async with self.locks.hold(*{vertex_lock(uid, r.dst) for r in items}):
                ops: list[Operation] = []
                stored = rows.edges_by_key(uid, (r.key for r in items))
                for row, answer in zip(items, answers):
                    try:
                        props = checks.canonical_properties(answer.properties, limit)
                    except ToruaError:
                        props = row.properties
                    ops += decide.after_check(uid, stored.get(row.key), row.in_token, answer.state, answer.token, props, answer.weight)
                if ops:
                    await self.node.write(shard_id, ops, "graph repair")

    async def _send_outbox(self, shard_id: int, rows: GraphRows, graphs: dict[str, GraphSettings]) -> None:
        tasks = rows.outbox(limit=REPAIR_ROWS)
        groups: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
        for task in tasks:
            settings = graphs.get(task.uid)
            if settings is None:
                continue
            peer = self._shard_of(settings, task.dst if task.kind == "detach" else task.src)
            groups[(task.uid, task.kind, peer)].append(task)
        for (uid, kind, peer), items in groups.items():
            op = GraphOp.EDGE_DETACH if kind == "detach" else GraphOp.EDGE_DROP
            try:
                await self.ask(peer, op, ref_of(graphs[uid]), [EdgeHalf(t.src, t.type, t.dst, t.token) for t in items], self._peer_timeout())
            except ToruaError as exc:
                log.debug("shard %d: outbox %s to shard %d not delivered: %s", shard_id, kind, peer, exc.message)
                continue
            await self.node.write(shard_id, [OutboxDone(uid, kind, t.src, t.type, t.dst, t.token) for t in items], "graph outbox")
