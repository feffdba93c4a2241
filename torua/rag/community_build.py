"""A community run over one corpus (docs/design/graphrag.md section 6): read its
entity graph from every shard, find communities (`torua.rag.louvain`), summarise
them (`torua.rag.communities`) and write them; a worker runs it as a job
(``POST /rag/{g}/communities``).

The run reads every `RELATED` and `MENTIONS` edge with read-only Cypher, paged
(`scan_edges`), so it costs a pass over the corpus's relations, not over its text;
Louvain runs in memory on the worker. Its communities are the vertices
``m/{run}/{n}`` (label `Community`: the summary and its embedding, size, the most
central members' ids and names, the representative chunks) with an
`IN_COMMUNITY` edge from each member. Then the `communities` vertex (label
`CommunityRun`) is pointed at the run: that is its commit point, and global
queries read only the communities of the run it names; the vertices of earlier
runs are deleted last (their `IN_COMMUNITY` edges go with them). A run that dies
half way is run again by the next worker (the job is redelivered) and writes the
same vertices; one that never finishes leaves the previous run in use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import defaultdict
from typing import Any

from torua.graph.client import Graph
from torua.rag import answers, communities, louvain, schema
from torua.rag.ingest import each

PAGE = 5000  # rows a shard answers per Cypher page (its cap is 10,000)
_EDGES = (
    "MATCH (a:Vertex)-[e:Edge]->(b:Vertex) WHERE NOT a.stub AND e.type = $type AND (a.id > $a OR (a.id = $a AND b.id > $b)) "
    "RETURN a.id, b.id, e.weight ORDER BY a.id, b.id LIMIT {page}"
)
_NAMED = (
    "MATCH (v:Vertex) WHERE NOT v.stub AND v.label = $label AND (v.id > $a OR (v.id = $a AND '' > $b)) "
    "RETURN v.id, '', v.props ORDER BY v.id LIMIT {page}"
)
_LABELLED = (
    "MATCH (v:Vertex) WHERE NOT v.stub AND v.label = $label AND (v.id > $a OR (v.id = $a AND '' > $b)) "
    "RETURN v.id, '' ORDER BY v.id LIMIT {page}"
)


async def _pages(graph: Graph, query: str, params: dict[str, Any], page: int) -> list[list[Any]]:
    """Every row of `query` (ordered by its first two columns, which must be unique,
    `page` rows per shard) over every shard: a shard that answered a full page may
    have more, so the next page starts after the least last row of those."""
    rows: dict[tuple[str, str], list[Any]] = {}
    after = ("", "")
    while True:
        answer = await graph.cypher(query.format(page=page), {**params, "a": after[0], "b": after[1]})
        per_shard: dict[Any, list[tuple[str, str]]] = defaultdict(list)
        for row in answer["rows"]:
            values = row["values"]
            key = (str(values[0]), str(values[1]))
            rows[key] = values
            per_shard[row["shard"]].append(key)
        full = [keys[-1] for keys in per_shard.values() if len(keys) >= page]
        if not full:
            return list(rows.values())
        after = min(full)


async def scan_edges(graph: Graph, type: str, page: int = PAGE) -> list[tuple[str, str, float]]:
    """Every visible edge of `type` as (src, dst, weight), each once (read in src's shard)."""
    return [(str(a), str(b), float(w)) for a, b, w in await _pages(graph, _EDGES, {"type": type}, page)]


async def scan_ids(graph: Graph, label: str, page: int = PAGE) -> list[str]:
    """The ids of every vertex with `label`."""
    return [str(row[0]) for row in await _pages(graph, _LABELLED, {"label": label}, page)]


async def scan_names(graph: Graph, page: int = PAGE) -> list[tuple[str, str]]:
    """(id, name) of every entity of the corpus (a worker's resolver learns them)."""
    out: list[tuple[str, str]] = []
    for id, _, props in await _pages(graph, _NAMED, {"label": schema.ENTITY}, page):
        try:
            held = json.loads(props) if isinstance(props, str) and props else props
        except ValueError:
            held = None
        name = held.get("name") if isinstance(held, dict) else None
        out.append((str(id), str(name) if isinstance(name, str) and name else str(id).split("/", 2)[-1]))
    return out


def run_prefix(run: str) -> str:
    return f"m/{run}/"


def summariser(llm: Any, model: str) -> Any:
    """How a run summarises a community: by the corpus's chat model when it has one
    (`torua.rag.answers`), else None (extractively, `communities.summary`)."""
    if llm is None:
        return None

    def summarise(names: list[str], texts: list[str]) -> str:
        return llm.chat(model, answers.SUMMARY_SYSTEM, answers.summary_prompt(names, texts), max_tokens=300).strip()[: communities.SUMMARY_CHARS]

    return summarise


async def build(graph: Graph, embedder: Any, run: str, summarise: Any = None) -> dict[str, Any]:
    """One run (`run`: its id, a job's): the `communities` vertex's new properties.
    `summarise(names, texts)`: a community's summary from its central names and its
    best chunks' texts (None: extractive)."""
    relations = await scan_edges(graph, schema.RELATED)
    assignment = await asyncio.to_thread(louvain.detect, communities.louvain_edges(relations))
    found = communities.group(assignment, relations)
    members = {e for c in found for e in c.members}
    mentions: dict[str, list[str]] = defaultdict(list)
    for chunk, entity, _ in await scan_edges(graph, schema.MENTIONS):
        if entity in members:
            mentions[entity].append(chunk)
    chosen = [communities.representative_chunks(c, mentions) for c in found]
    named = sorted({e for c in found for e in c.members[: communities.SUMMARY_NAMES]})
    quoted = sorted({chunk for chunks in chosen for chunk in chunks[: communities.SUMMARY_CHUNKS]})
    vertices = await each([graph.get_vertex(id) for id in named + quoted])
    held = {id: (v or {}).get("properties", {}) for id, v in zip(named + quoted, vertices)}

    def name(entity: str) -> str:
        return str(held.get(entity, {}).get("name") or entity.rsplit("/", 1)[-1])

    summaries = []
    for c, chunks in zip(found, chosen):
        names = [name(e) for e in c.members[: communities.SUMMARY_NAMES]]
        texts = [str(held.get(chunk, {}).get("text", "")) for chunk in chunks[: communities.SUMMARY_CHUNKS]]
        summaries.append(await asyncio.to_thread(summarise, names, texts) if summarise else communities.summary(names, texts))
    vectors = await asyncio.to_thread(embedder.embed, summaries) if summaries else []
    prefix = run_prefix(run)
    await each([
        graph.put_vertex(f"{prefix}{c.number}", schema.COMMUNITY, {
            "summary": text, "size": len(c.members), "run": run, "number": c.number,
            "entities": list(c.members[: communities.SUMMARY_NAMES]), "names": [name(e) for e in c.members[: communities.SUMMARY_NAMES]],
            "chunks": chunks,
        }, [float(x) for x in vector])
        for c, text, chunks, vector in zip(found, summaries, chosen, vectors)
    ])
    await each([graph.put_edge(e, schema.IN_COMMUNITY, f"{prefix}{c.number}") for c in found for e in c.members])
    properties = {
        "run": run, "communities": len(found), "entities": len(members), "relations": len(relations),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    await graph.put_vertex(schema.COMMUNITIES_VERTEX, schema.COMMUNITY_RUN, properties)
    await forget_other_runs(graph)
    return properties


async def forget_other_runs(graph: Graph) -> int:
    """Delete the `Community` vertices of every run but the one in use; how many went."""
    current = await graph.get_vertex(schema.COMMUNITIES_VERTEX)
    if current is None:
        return 0
    keep = run_prefix(str(current["properties"].get("run", "")))
    old = [id for id in await scan_ids(graph, schema.COMMUNITY) if not id.startswith(keep)]
    await each([graph.delete_vertex(id) for id in old])
    return len(old)
