@replicas2
Feature: Graph data
  A cluster holds named graphs (BRIEF section 8), run for real on a cluster of
  its own: `torua up --replicas 2` starts a nats-server, a coordinator, nodes
  n1, n2 and n3 holding two copies of each of 8 shards, and a gateway. A graph's
  vertices live in the shards that hold keys (vertex id of graph g in the shard
  of the key "g/id"), each edge with both of its ends' shards, and the gateway
  plans what spans shards: imports in per-shard batches, traversals and
  shortest paths one hop at a time over every shard. Each scenario uses graphs
  of its own; vector, text and Cypher queries are the graph index's (not
  walked here).

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

  Scenario: A graph survives the loss of a node, and a deleted graph is gone
    Given the graph "kept" with the edges "a r b, b r c, c r a"
    When the process of node n2 is killed with SIGKILL
    Then the traversal from "a" in "kept" reaches "a:0, b:1, c:2" within the deadline
    When I DELETE "/graphs/kept"
    Then the answer is 204
    When I GET "/graphs/kept/vertices/a"
    Then the answer is 404 with error code "not_found"
