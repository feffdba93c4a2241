@replicas2
Feature: Replication and failover
  With `torua up --replicas 2` every shard (8 here) is kept on two distinct
  nodes: a primary, which serves reads and writes, and a replica, which follows
  the primary's log. A write is acknowledged only once every in-sync replica has
  it. When a primary's node misses 3 heartbeats it turns unhealthy and its shards
  fail over, within about a second, to an in-sync replica on a healthy node; a
  paused old primary that wakes is fenced and comes back as a replica; a node that
  returns catches up and rejoins the in-sync set, and the cluster is green again.
  Its copies do not move back; once in sync it leads its share of primaries
  again, handed over by in-sync copies (no data copied). A node stopped with SIGTERM first
  hands its primaries over to in-sync replicas, so a writer sees no failure.

  These scenarios run on a cluster of their own, started with `torua up
  --replicas 2` (a nats-server, a coordinator, nodes n1, n2 and n3 and a
  gateway, each its own OS process). The cluster scenarios of replication
  (health monitoring with a paused node, automatic recovery, graceful shutdown)
  are in cluster-management.feature. After each scenario killed nodes are
  started again and the cluster is brought back to green.

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
