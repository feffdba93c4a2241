"""Graph data (docs/design/graph.md): the rows of a shard's graphs in SQLite
(`torua.graph.rows`), the Kuzu index derived from them (`torua.graph.kuzu_index`),
and the pure rules and plans around them."""
