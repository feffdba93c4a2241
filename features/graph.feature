@replicas2
Feature: Graph data
  A cluster holds named graphs (BRIEF section 8), run for real on a cluster of
  its own: `torua up --replicas 2` starts a nats-server, a coordinator, nodes
  n1, n2 and n3 holding two copies of each of 8 shards, and a gateway. A graph's
  vertices live in the shards that hold keys (vertex id of graph g in the shard
  of the key "g/id"), each edge with both of its ends' shards, and the gateway
  plans what spans shards: imports in per-shard batches, traversals and
  shortest paths one hop at a time over every shard, searches and Cypher on
  every shard at once, merged. Each scenario uses graphs of its own.

  Background:
    Given a running Torua cluster
    And the cluster keeps 2 copies of each shard

  Scenario: Create a graph, again with the same settings, and with others
    When I PUT "/graphs/papers" with
      """
      {"vector_dim": 3, "metric": "cosine", "text_properties": ["text"]}
      """
    Then the answer is 201 with
      """
      {"name": "papers", "vector_dim": 3, "metric": "cosine", "text_properties": ["text"], "created": true}
      """
    When I PUT "/graphs/papers" with
      """
      {"vector_dim": 3, "metric": "cosine", "text_properties": ["text"]}
      """
    Then the answer is 200 with
      """
      {"name": "papers", "created": false}
      """
    When I PUT "/graphs/papers" with
      """
      {"vector_dim": 384}
      """
    Then the answer is 409 with error code "conflict"
    And "/graphs" lists the graph "papers"
    When I PUT "/graphs/bad%20name" with
      """
      {}
      """
    Then the answer is 400 with error code "bad_request"

  Scenario: Vertices are created, replaced, read and deleted; unknown graphs and wrong vectors are refused
    Given the graph "people" with vectors of 2
    When I PUT "/graphs/people/vertices/ada" with
      """
      {"label": "Person", "properties": {"born": 1815}, "embedding": [0.5, 1]}
      """
    Then the answer is 201 with
      """
      {"id": "ada", "created": true}
      """
    When I PUT "/graphs/people/vertices/ada" with
      """
      {"label": "Person", "properties": {"born": 1815, "name": "Ada"}, "embedding": [0.5, 1]}
      """
    Then the answer is 200 with
      """
      {"id": "ada", "created": false}
      """
    When I GET "/graphs/people/vertices/ada?embedding=true"
    Then the answer is 200 with
      """
      {"id": "ada", "label": "Person", "properties": {"born": 1815, "name": "Ada"}, "embedding": [0.5, 1.0]}
      """
    When I PUT "/graphs/people/vertices/b%C3%A4r/n%C3%A9" with
      """
      {"label": "Animal"}
      """
    Then the answer is 201 with
      """
      {"id": "bär/né"}
      """
    When I PUT "/graphs/people/vertices/grace" with
      """
      {"label": "Person", "embedding": [1, 2, 3]}
      """
    Then the answer is 400 with error code "bad_request"
    When I PUT "/graphs/nobody/vertices/ada" with
      """
      {"label": "Person"}
      """
    Then the answer is 404 with error code "not_found"
    When I DELETE "/graphs/people/vertices/ada"
    Then the answer is 204
    When I GET "/graphs/people/vertices/ada"
    Then the answer is 404 with error code "not_found"
    When I DELETE "/graphs/people/vertices/ada"
    Then the answer is 204

  Scenario: Edges need both vertices, are seen from both ends, and go with a vertex
    Given the graph "social" with vertices "ada, charles, grace, linus/torvalds"
    When I PUT "/graphs/social/edges" with
      """
      {"src": "ada", "type": "knows", "dst": "charles", "properties": {"since": 1833}, "weight": 2}
      """
    Then the answer is 201 with
      """
      {"src": "ada", "type": "knows", "dst": "charles", "created": true}
      """
    When I PUT "/graphs/social/edges" with
      """
      {"src": "ada", "type": "knows", "dst": "nobody"}
      """
    Then the answer is 404 with error code "not_found"
    And the error message names "nobody"
    Given the edges of "social": "grace knows ada, ada cites linus/torvalds, charles knows linus/torvalds"
    Then the edges of "ada" in "social" going "out" are "ada cites linus/torvalds, ada knows charles"
    And the edges of "ada" in "social" going "in" are "grace knows ada"
    And the edges of "linus/torvalds" in "social" going "in" are "ada cites linus/torvalds, charles knows linus/torvalds"
    When I DELETE "/graphs/social/edges?src=ada&type=cites&dst=linus/torvalds"
    Then the answer is 204
    And the edges of "linus/torvalds" in "social" going "in" are "charles knows linus/torvalds"
    When I DELETE "/graphs/social/vertices/ada"
    Then the answer is 204
    And the edges of "charles" in "social" going "both" become "charles knows linus/torvalds"
    And the edges of "grace" in "social" going "both" become "none"

  Scenario: An import applies every vertex line before the edge lines, names bad lines, and again changes nothing
    Given the empty graph "web"
    When I import into "web"
      """
      {"edge": {"src": "page/1", "type": "links", "dst": "page/2"}}
      {"vertex": {"id": "page/1", "label": "Page", "properties": {"title": "one"}}}
      {"vertex": {"id": "page/2", "label": "Page", "properties": {"title": "two"}}}
      not json
      {"edge": {"src": "page/2", "type": "links", "dst": "page/404"}}
      """
    Then the answer is 200 with
      """
      {"vertices": 2, "edges": 1}
      """
    And the import names the lines 4, 5 as not applied
    And the graph "web" counts 2 vertices and 1 edges
    When I import the same lines into "web" again
    Then the answer is 200 with
      """
      {"vertices": 2, "edges": 1}
      """
    And the graph "web" counts 2 vertices and 1 edges

  Scenario: Properties over 64 KiB are refused, and nothing is written
    Given the empty graph "heavy"
    When I PUT the vertex "big" of "heavy" with properties of 70000 bytes
    Then the answer is 413 with error code "value_too_large"
    When I GET "/graphs/heavy/vertices/big"
    Then the answer is 404 with error code "not_found"

  Scenario: Traverse hop by hop, with hops as the shortest distance from the seeds, and a shortest path
    Given the graph "chain" with the edges "a next b, b next c, c next d, d next e, x next c"
    When I POST "/graphs/chain/traverse" with
      """
      {"from": ["a"], "direction": "out", "max_hops": 2}
      """
    Then the traversal reaches "a:0, b:1, c:2" and is not truncated
    When I POST "/graphs/chain/traverse" with
      """
      {"from": ["a", "x"], "direction": "out", "max_hops": 6, "edges": true}
      """
    Then the traversal reaches "a:0, x:0, b:1, c:1, d:2, e:3" and is not truncated
    When I POST "/graphs/chain/traverse" with
      """
      {"from": ["e"], "direction": "in", "max_hops": 6, "limit": 3}
      """
    Then the traversal reaches "e:0, d:1, c:2" and is truncated
    When I POST "/graphs/chain/shortest-path" with
      """
      {"from": "a", "to": "e", "direction": "out", "max_hops": 6}
      """
    Then the answer is 200 with
      """
      {"path": ["a", "b", "c", "d", "e"]}
      """
    When I POST "/graphs/chain/shortest-path" with
      """
      {"from": "a", "to": "x", "direction": "both", "max_hops": 2}
      """
    Then the answer is 404 with error code "not_found"
    When I POST "/graphs/chain/traverse" with
      """
      {"from": ["a"], "max_hops": 7}
      """
    Then the answer is 400 with error code "bad_request"
    When I POST "/graphs/chain/shortest-path" with
      """
      {"from": "a", "to": "e", "max_hops": 0}
      """
    Then the answer is 400 with error code "bad_request"

  Scenario: A graph survives the loss of a node, and a deleted graph is gone
    Given the graph "kept" with the edges "a r b, b r c, c r a"
    When the process of node n2 is killed with SIGKILL
    Then the traversal from "a" in "kept" reaches "a:0, b:1, c:2" within the deadline
    When I DELETE "/graphs/kept"
    Then the answer is 204
    When I GET "/graphs/kept/vertices/a"
    Then the answer is 404 with error code "not_found"

  Scenario: Vector search: every shard's nearest vertices merged, best first, right after a bulk import
    When I PUT "/graphs/notes" with
      """
      {"vector_dim": 2, "metric": "cosine"}
      """
    And I import into "notes"
      """
      {"vertex": {"id": "east", "label": "Note", "properties": {"text": "to the east"}, "embedding": [1, 0]}}
      {"vertex": {"id": "northeast", "label": "Note", "properties": {"text": "between"}, "embedding": [1, 1]}}
      {"vertex": {"id": "north", "label": "Memo", "properties": {"text": "to the north"}, "embedding": [0, 1]}}
      {"vertex": {"id": "west", "label": "Note", "embedding": [-1, 0]}}
      """
    And 600 vertices labelled "Filler" with the embedding [-1, -0.1] are imported into "notes"
    And I POST "/graphs/notes/search/vector" with
      """
      {"vector": [1, 0.2], "k": 3}
      """
    Then the hits, best first, are
      | id        | label | score | properties              |
      | east      | Note  | 0.981 | {"text": "to the east"}  |
      | northeast | Note  | 0.832 | {"text": "between"}      |
      | north     | Memo  | 0.196 | {"text": "to the north"} |
    And the vertices "east, northeast, north" of "notes" are on 3 different shards
    When I POST "/graphs/notes/search/vector" with
      """
      {"vector": [1, 0.2], "k": 3, "label": "Note"}
      """
    Then the hits are "east, northeast, west", best first
    When I POST "/graphs/notes/search/vector" with
      """
      {"vector": [1, 0.2, 0]}
      """
    Then the answer is 400 with error code "bad_request"

  Scenario: Text search: BM25 over text_properties with every shard's statistics, best first
    When I PUT "/graphs/library" with
      """
      {"text_properties": ["title", "text"]}
      """
    And I import into "library"
      """
      {"vertex": {"id": "kuzu", "label": "Book", "properties": {"title": "graph databases", "text": "and graph queries"}}}
      {"vertex": {"id": "sqlite", "label": "Book", "properties": {"title": "relational databases"}}}
      {"vertex": {"id": "networkx", "label": "Book", "properties": {"text": "graph algorithms in python"}}}
      {"vertex": {"id": "dijkstra", "label": "Paper", "properties": {"text": "shortest paths in a graph"}}}
      {"vertex": {"id": "soup", "label": "Book", "properties": {"text": "a recipe for soup"}}}
      """
    And I POST "/graphs/library/search/text" with
      """
      {"query": "graph databases", "k": 2}
      """
    Then the hits are "kuzu, sqlite", best first
    And the vertices "kuzu, sqlite" of "library" are on 2 different shards
    When I POST "/graphs/library/search/text" with
      """
      {"query": "graph databases", "label": "Paper"}
      """
    Then the hits are "dijkstra", best first
    When I POST "/graphs/library/search/text" with
      """
      {"query": "soup"}
      """
    Then the hits are "soup", best first

  Scenario: Cypher runs read-only on every shard's part of the graph, each row with its shard; an edge between two shards is on both
    Given the graph "cy" with the edges "ada knows grace, grace knows linus"
    When I POST "/graphs/cy/cypher" with
      """
      {"query": "MATCH (v:Vertex) WHERE NOT v.stub RETURN v.id, v.label"}
      """
    Then the Cypher rows are "ada V; grace V; linus V", each from the shard of its first vertex in "cy"
    When I POST "/graphs/cy/cypher" with
      """
      {"query": "MATCH (a:Vertex)-[e:Edge]->(b:Vertex) WHERE NOT a.stub AND a.id = $who RETURN a.id, e.type, b.id", "params": {"who": "grace"}}
      """
    Then the Cypher rows are "grace knows linus", each from the shard of its first vertex in "cy"
    When I POST "/graphs/cy/cypher" with
      """
      {"query": "MATCH (a:Vertex)-[e:Edge]->(b:Vertex) RETURN a.id, e.type, b.id"}
      """
    Then the Cypher rows are "ada knows grace; grace knows linus", each edge from the shards of both its ends in "cy"
    And the answer is 200 with
      """
      {"columns": ["a.id", "e.type", "b.id"]}
      """

  Scenario Outline: Cypher that writes, or is no Cypher, is refused and changes nothing
    Given the graph "cy-<name>" with the edges "ada knows grace"
    When I POST "/graphs/cy-<name>/cypher" with
      """
      {"query": "<query>"}
      """
    Then the answer is 400 with error code "bad_request"
    And the graph "cy-<name>" counts 2 vertices and 1 edges

    Examples:
      | name   | query                                            |
      | create | CREATE (v:Vertex {id: 'linus'})                  |
      | merge  | MERGE (v:Vertex {id: 'linus'})                   |
      | set    | MATCH (v:Vertex) SET v.label = 'Person'          |
      | delete | MATCH (v:Vertex) DETACH DELETE v                 |
      | bad    | MATCH (v:Vertex RETURN v                         |

  Scenario: The NATS API mirrors REST, the graph in a "graph" field
    Given the graph "over-nats" with the edges "a next b, b next c"
    When I request "torua.api.graph.traverse" on the NATS API with
      """
      {"graph": "over-nats", "from": ["a"], "max_hops": 2}
      """
    Then the traversal reaches "a:0, b:1, c:2" and is not truncated
    When I request "torua.api.graph.vertex.get" on the NATS API with
      """
      {"graph": "over-nats", "id": "b"}
      """
    Then the answer is 200 with
      """
      {"id": "b", "label": "V", "properties": {}}
      """
    When I request "torua.api.graph.vertex.get" on the NATS API with
      """
      {"graph": "nobody", "id": "b"}
      """
    Then the answer is 404 with error code "not_found"
