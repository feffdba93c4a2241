"""Which Cypher a graph's users may run, as pure functions over text (no Kuzu).

A user's query names their graph's tables by public names (`Vertex`, `Edge`,
`Embedding`); a shard's Kuzu database holds several graphs, each in tables of
its own (`V_3`, `E_3`, ...). `map_labels` puts the graph's table names in the
label positions of the query (`(v:Vertex)`, `[e:Edge|Edge]`) and refuses any
name of the database's own tables written by hand (so a query cannot reach
another graph's tables). `plan_refusal` reads Kuzu's EXPLAIN of the mapped query
and refuses any operator or function that is not a read, and any table other
than the graph's own (a pattern without a label scans every table).

Kuzu's read-only transaction alone lets `COPY TO`, `EXPORT`, `ATTACH`, `USE`,
`LOAD FROM` and `CALL threads=...` through (measured, docs/design/graph.md
section 9), hence the allow-lists. They fail closed: an operator a later Kuzu
adds is refused until it is listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping

__all__ = ["CypherRefused", "READ_CLAUSES", "READ_OPERATORS", "READ_FUNCTIONS", "first_clause_refusal", "map_labels", "plan_refusal"]


class CypherRefused(ValueError):
    """The query is not one a user may run on a graph (the caller answers bad_request)."""


# EXPLAIN operators of reads (Kuzu 0.11.3). Writes show INSERT, SET_PROPERTY, DELETE,
# MERGE; DDL CREATE_TABLE, DROP, ALTER; files COPY_TO, READ_CSV..; sessions
# ATTACH_DATABASE, USE_DATABASE, EXPORT_DATABASE, TRANSACTION, STANDALONE_CALL.
READ_OPERATORS = frozenset({
    "RESULT_COLLECTOR", "PROJECTION", "FILTER", "FLATTEN", "LIMIT", "SKIP", "UNWIND", "CROSS_PRODUCT",
    "HASH_JOIN_BUILD", "HASH_JOIN_PROBE", "INTERSECT_BUILD", "INTERSECT", "SEMI_MASKER", "MULTIPLICITY_REDUCER",
    "AGGREGATE", "AGGREGATE_FINALIZE", "AGGREGATE_SCAN", "ORDER_BY", "ORDER_BY_MERGE", "ORDER_BY_SCAN",
    "TOP_K", "TOP_K_SCAN", "UNION_ALL_SCAN", "SCAN_NODE_TABLE", "SCAN_REL_TABLE", "PRIMARY_KEY_SCAN_NODE_TABLE",
    "RECURSIVE_EXTEND", "PATH_PROPERTY_PROBE", "TABLE_FUNCTION_CALL", "DUMMY_SINK", "DUMMY_SIMPLE_SINK",
    "EMPTY_RESULT", "MARK_ACCUMULATE", "OFFSET_SCAN_NODE_TABLE",
})
# Table functions a read may use: READ_FTABLE is Kuzu's own (RETURN, UNWIND, recursive
# patterns). QUERY_FTS_INDEX and QUERY_VECTOR_INDEX name a table in a string, so
# they could reach another graph: the search endpoints do that instead.
READ_FUNCTIONS = frozenset({"READ_FTABLE"})

_OPERATOR = re.compile(r"│\s*([A-Z][A-Z_]{2,})\[\d+\]\s*│")
_FUNCTION = re.compile(r"Function: (\w+)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# One token of Cypher text: a string, a `quoted` name, a comment, a name, or one other character.
_TOKEN = re.compile(
    r"""(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"|(?P<quoted>`(?:[^`]|``)*`)"
    r"|(?P<comment>//[^\n]*|/\*.*?\*/)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def _tokens(query: str) -> Iterator[tuple[str, str]]:
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind == "string" or kind == "quoted":
            pass
        elif kind == "other" and text in "'\"`":
            raise CypherRefused("bad query: a string or `name` is not closed")
        yield kind, text


# The first word of a query a user may run. Others are refused before Kuzu sees them:
# preparing `EXPORT DATABASE '<dir>'` already creates the directory.
READ_CLAUSES = frozenset({"match", "optional", "unwind", "with", "return"})


def first_clause_refusal(query: str) -> str | None:
    """Why a query does not start as a read does (None: it does).

    >>> first_clause_refusal("  // find\\n MATCH (v:Vertex) RETURN v"), first_clause_refusal("EXPORT DATABASE '/tmp/x'")
    (None, 'only read-only queries are allowed: a query starts with MATCH, OPTIONAL MATCH, UNWIND, WITH or RETURN, not EXPORT')
    """
    for kind, text in _tokens(query):
        if kind in ("space", "comment"):
            continue
        if kind == "name" and text.lower() in READ_CLAUSES:
            return None
        return f"only read-only queries are allowed: a query starts with MATCH, OPTIONAL MATCH, UNWIND, WITH or RETURN, not {text[:40]}"
    return "the query is empty"


def map_labels(query: str, names: Mapping[str, str], reserved: Callable[[str], bool]) -> str:
    """`query` with each public label (a key of `names`, in any case, plain or in
    backquotes) in a label position (after `:` or `|`) replaced by its table; refuses a
    name `reserved` says is one of the database's own.

    >>> map_labels("MATCH (v:Vertex)-[e:Edge]->(w:vertex) RETURN v.id, 'Vertex' AS s", {"vertex": "V_3", "edge": "E_3"}, lambda n: False)
    "MATCH (v:V_3)-[e:E_3]->(w:V_3) RETURN v.id, 'Vertex' AS s"
    """
    lowered = {k.lower(): v for k, v in names.items()}
    out: list[str] = []
    previous = ""  # the last token that is not space or a comment
    for kind, text in _tokens(query):
        if kind in ("name", "quoted"):
            bare = text[1:-1].replace("``", "`") if kind == "quoted" else text
            if reserved(bare):
                raise CypherRefused(f"{bare!r} is a name the graph index keeps for itself: use :Vertex, :Edge and :Embedding")
            if previous in (":", "|") and bare.lower() in lowered:
                text = lowered[bare.lower()]
        out.append(text)
        if kind not in ("space", "comment"):
            previous = text
    return "".join(out)


def plan_refusal(plan: str, allowed_tables: Collection[str], known_tables: Collection[str]) -> str | None:
    """Why the EXPLAIN text `plan` is not a read of the allowed tables only (None: it is).

    >>> plan_refusal("│ RESULT_COLLECTOR[1] │\\n│ INSERT[0] │", {"V_1"}, {"V_1", "V_2"})
    'only read-only queries are allowed (refused: INSERT)'
    >>> plan_refusal("│ SCAN_NODE_TABLE[0] │\\n│ Tables: V_1 │\\n│ V_2 │", {"V_1"}, {"V_1", "V_2"})
    'a pattern without a label reaches other tables: give every node a label (:Vertex)'
    """
    operators = set(_OPERATOR.findall(plan))
    functions = set(_FUNCTION.findall(plan))
    if not operators:
        return "only queries that read (MATCH ... RETURN) are allowed"
    refused = sorted((operators - READ_OPERATORS) | (functions - READ_FUNCTIONS))
    if refused:
        return f"only read-only queries are allowed (refused: {', '.join(refused)})"
    allowed = {t.lower() for t in allowed_tables}
    others = {t.lower() for t in known_tables} - allowed
    if others & {w.lower() for w in _WORD.findall(plan)}:
        return "a pattern without a label reaches other tables: give every node a label (:Vertex)"
    return None
