@replicas2
Feature: Replication and failover
  With `torua up --replicas 2` every shard (8 here) is kept on two distinct
  nodes: a primary, which serves reads and writes, and a replica, which follows
  the primary's log. A write is acknowledged only once every in-sync replica has
  it. When a primary's node misses 3 heartbeats it turns unhealthy and its shards
  fail over, within about a second, to an in-sync replica on a healthy node; a
  paused old primary that wakes is fenced and comes back as a replica; a node that
  returns catches up and rejoins the in-sync set, and the cluster is green again.
  Shards do not move back to it automatically. A node stopped with SIGTERM first
  hands its primaries over to in-sync replicas, so a writer sees no failure.

  These scenarios run on a cluster of their own, started with `torua up
  --replicas 2` (a nats-server, a coordinator, nodes n1, n2 and n3 and a
  gateway, each its own OS process). Since shards never move back, each scenario
  that fails a node fails a different one, so that the node still is the primary
  of the shards placement gave it; the graceful stop takes whichever node is
  primary of the most shards then. After each scenario paused nodes are resumed,
  killed or stopped nodes started again, and the cluster is brought back to green.

  Background:
    Given a running Torua cluster
    And the cluster keeps 2 copies of each shard

  Scenario: Every shard has a primary and a replica on distinct nodes
    When I ask for /shards
    Then it lists 8 shards, numbered 0 to 7, each once
    And every shard is active and names as its primary a node that /nodes shows healthy
    And every shard has a primary and 1 replica on distinct healthy nodes, every copy in sync
    And each node's shard ids in /nodes are the shards it holds a copy of, and its primaries the shards it is primary of
    When I ask for /cluster/health
    Then it is green with all 8 shards active and 0 shards under-replicated

  Scenario: Reads during a node failure: with 2 copies every key still reads back, and writes succeed
    Given 120 keys named "replicated-failure-{n}" are stored
    And some of those keys live on node n2 and some on other nodes
    When the process of node n2 is killed with SIGKILL
    Then node n2 turns unhealthy in /nodes
    And every shard n2 was primary for names another node as its primary, in state "active"
    And every shard has an active primary on a healthy node again
    And every one of those keys reads back its value
    When I store 120 keys named "written-while-n2-is-down-{n}"
    Then every key written in this scenario reads back its value

  Scenario: Health monitoring: a paused node turns unhealthy, other nodes serve its shards, and it comes back healthy
    Given 120 keys named "paused-{n}" are stored
    And some of those keys live on node n3 and some on other nodes
    When the process of node n3 is paused with SIGSTOP
    Then node n3 turns unhealthy in /nodes
    And every shard n3 was primary for names another node as its primary, in state "active"
    And every one of those keys on n3 reads back its value from its new primary
    When the process of node n3 is resumed with SIGCONT
    Then node n3 appears in /nodes as healthy
    And the cluster health becomes green
    And every one of those keys reads back its value

  Scenario: Automatic recovery: a restarted node catches up and rejoins, and its shards do not move back
    Given 120 keys named "recovery-{n}" are stored
    And some of those keys live on node n1 and some on other nodes
    When the process of node n1 is killed with SIGKILL
    Then node n1 turns unhealthy in /nodes
    And every shard n1 was primary for names another node as its primary, in state "active"
    When I store 60 keys named "written-while-n1-is-down-{n}"
    And node n1 is started again with the same command line
    Then node n1 appears in /nodes as healthy
    And the cluster health becomes green
    And node n1 is an in-sync replica of every shard it was primary for
    And node n1 is the primary of none of the shards it was primary for before the failure
    And every key written in this scenario reads back its value

  Scenario: Graceful shutdown: a node stopped with SIGTERM hands its shards over first
    Given a node that is the primary of some shards
    And a writer that keeps storing new keys on that node's shards through the gateway, recording every answer
    When the writer has had 20 writes acknowledged
    And the process of that node is sent SIGTERM
    Then that node's process exits with code 0
    And its log says "hand-off done"
    When the writer has had 50 more writes acknowledged since the exit
    And the writer is stopped
    Then no write failed: every answer was 204
    And /shards names that node as the primary of no shard
    And every key written in this scenario reads back its value
