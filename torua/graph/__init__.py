"""Graph data (docs/design/graph.md): the rows in the shard's SQLite database
(`torua.graph.rows`), the Kuzu index derived from them (`torua.graph.index`,
`torua.graph.kuzu_index`), and the pure rules and plans around them."""
