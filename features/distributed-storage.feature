Feature: Distributed storage
  Torua splits key-value data into shards (16 here), each held by one storage
  node, and serves it to applications through a REST gateway that routes every
  request by the shard map. These are the prototype's storage scenarios, in this
  project's words, run for real: one cluster started with `torua up` (a
  nats-server, a coordinator, nodes n1, n2 and n3 and a gateway, each its own OS
  process) serves every scenario. The client talks to the gateway's URL only,
  except where a scenario checks the nodes themselves: their processes (found,
  killed and started again with psutil) and their own NATS subjects.

  They cover storing, reading, overwriting and deleting values and keys of
  every shape; how keys spread over shards and nodes and always route the same
  way; what clients see while a node is down (its shards answer 503 until it
  returns, and are never opened empty elsewhere) and after a node joins (it
  takes its share, every key stays readable); big values, concurrent clients
  and many writes; and the shard and node views operators rely on.
  After each scenario the cluster is brought back to green before the next.

  Background:
    Given a running Torua cluster

  Scenario: Store and read a value
    When I store "hello, world" under the key "greeting"
    Then the store is accepted
    And reading the key "greeting" returns "hello, world"

  Scenario: Overwrite a value
    Given the key "colour" holds "red"
    When I store "blue" under the key "colour"
    Then the store is accepted
    And reading the key "colour" returns "blue"

  Scenario: Delete a value, then reading it is 404
    Given the key "short-lived" holds "soon gone"
    When I delete the key "short-lived"
    Then the delete is accepted
    And reading the key "short-lived" answers 404 with error code "not_found"
    And deleting the key "short-lived" again is accepted as well

  Scenario: A key that was never written is 404
    Then reading the key "never-written-anywhere" answers 404 with error code "not_found"

  Scenario: Keys spread over shards and nodes
    When I store 200 keys named "spread-{n}"
    Then the locations of those keys cover at least 12 of the 16 shards
    And every node holds some of those keys

  Scenario: The same key always routes the same way
    When I ask for the location of each of these keys 5 times:
      | key                                         |
      | simple                                      |
      | user@example.com                            |
      | path/to/resource                            |
      | key-with-spaces here                        |
      | 数字                                        |
      | very:long:key:with:many:colons:and:segments |
    Then every key gets the same shard and node each time
    And each key's shard is the one shard_for_key computes for 16 shards
    And each key's node is the primary that /shards names for that shard

  Scenario: Reads during a node failure: other nodes' keys still read, the dead node's keys answer 503
    Given 120 keys named "failure-{n}" are stored
    And some of those keys live on node n2 and some on other nodes
    When the process of node n2 is killed with SIGKILL
    Then node n2 turns unhealthy in /nodes
    And /shards still names n2 as the primary of the shards it held, in state "unavailable"
    And every one of those keys on another node reads back its value
    And every one of those keys on n2 answers 503 with a Retry-After header, never 404
    When node n2 is started again with the same command line
    Then the cluster health becomes green
    And every one of those keys reads back its value

  Scenario: A node joining takes its share of shards and every existing key stays readable
    Given 200 keys named "join-{n}" are stored
    When node n4 is started by hand against the cluster's NATS
    Then node n4 appears in /nodes as healthy
    And node n4 is given shards
    And once no move is in progress, the shard counts of nodes n1, n2, n3 and n4 differ by at most 1
    And every one of those keys reads back its value

  Scenario: Routing is invisible to the client
    Given the client knows only the gateway's URL
    When it stores a key held by each node through that URL
    Then every store is accepted
    And reading each of those keys through that URL returns its value

  Scenario: A value over 1 MB round-trips byte-exact
    When I store 1.5 MiB of random bytes under the key "big/one-and-a-half"
    Then the store is accepted
    And reading the key "big/one-and-a-half" returns exactly those bytes

  Scenario: Values up to 8 MiB are accepted and a larger one is refused with 413
    When I store 8 MiB of random bytes under the key "big/eight"
    Then the store is accepted
    And reading the key "big/eight" returns exactly those bytes
    When I store 9 MiB of random bytes under the key "big/nine"
    Then the store is refused with 413 and error code "value_too_large"
    And reading the key "big/nine" answers 404 with error code "not_found"

  Scenario: 10 concurrent writers and readers
    When 10 clients at once each store 30 keys of their own and read each one back
    Then every client read back exactly the values it wrote
    And afterwards every one of those 300 keys holds the value its writer wrote

  Scenario: /shards shows every shard and its node
    When I ask for /shards
    Then it lists 16 shards, numbered 0 to 15, each once
    And every shard is active and names as its primary a node that /nodes shows healthy

  Scenario: /nodes and a node's own info
    When I ask for /nodes
    Then it lists nodes n1, n2 and n3 as healthy
    And each node's shard count and shard ids match the shards /shards gives it
    When I ask for /nodes/n2
    Then it describes node n2 as healthy with the shards /shards gives it
    And its pid is the pid of the running "torua node --id n2" process
    And asking for /nodes/no-such-node answers 404 with a JSON error

  Scenario Outline: A key shaped like <shape> can be stored, read and deleted
    When I store "value of <key>" under the key "<key>"
    Then the store is accepted
    And reading the key "<key>" returns "value of <key>"
    When I delete the key "<key>"
    Then the delete is accepted
    And reading the key "<key>" answers 404 with error code "not_found"

    Examples:
      | shape          | key                                         |
      | a plain word   | simple                                      |
      | an e-mail      | user@example.com                            |
      | a path         | path/to/resource                            |
      | spaces         | key-with-spaces here                        |
      | Unicode        | 数字                                        |
      | many colons    | very:long:key:with:many:colons:and:segments |

  Scenario: 1000 sequential writes, then single operations are correct
    When I store 1000 keys named "seq-{n}" one after another
    Then every one of those keys reads back its value
    And listing keys with prefix "seq-" returns exactly those 1000 keys
    When I store "changed" under the key "seq-500"
    Then the store is accepted
    And reading the key "seq-500" returns "changed"
    And reading the key "seq-501" returns "value of seq-501"
    When I delete the key "seq-999"
    Then the delete is accepted
    And reading the key "seq-999" answers 404 with error code "not_found"
    And reading the key "seq-998" returns "value of seq-998"

  Scenario: The gateway routes each key to the node that holds it
    Given 100 keys named "routed-{n}" are stored
    When I ask the gateway where each of those keys lives
    Then every node holds some of those keys
    And the node it names answers a get for the key on its own NATS subject with the stored value
    And every other node answers that get with error code "moved"
