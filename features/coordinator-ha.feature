@replicas2 @coordinators2
Feature: Coordinator high availability
  The coordinator decides where shards live and writes the shard map. With
  `torua up --coordinators 2` two coordinator processes run, c1 and c2: exactly
  one leads and the other stands by, ready to take over. The lead is a lease, the
  key "leader" in the JetStream KV bucket "torua_leader": the coordinator that
  creates the key leads, and renews it about every second; the key expires 3 s
  after the last renewal, and then a standby creates it and leads. The term of a
  leader is the revision at which it created the key, so a later leader always
  has a higher term. The leader stamps the shard map it writes with its id and
  term, and every message it sends a node carries its term; a node refuses a
  message whose term is below the highest it has seen. While no coordinator
  leads, the nodes keep serving reads and writes.

  So a leader that dies is replaced within a few seconds by a standby, which
  carries on with the map from JetStream and does a leader's job (failing a dead
  node's shards over, for one); clients writing meanwhile see no error. A leader
  that was only paused (SIGSTOP) and wakes up after its lease ran out steps down
  without writing the map or the node records again, and the nodes refuse
  anything it still sends: two coordinators never steer the cluster at the same
  time.

  These scenarios run on a cluster of their own: a nats-server, coordinators c1
  and c2, nodes n1, n2 and n3 with two copies of each of 8 shards, and a gateway,
  each its own OS process. Which coordinator leads is not fixed; each scenario
  looks it up first. After each scenario paused processes are resumed, killed
  ones started again, and the cluster is brought back to green with one leader
  and one standby.

  Background:
    Given a running Torua cluster
    And the cluster keeps 2 copies of each shard
    And the cluster runs 2 coordinators, each its own process

  Scenario: Several coordinators agree on one leader
    When I ask for /cluster/info
    Then it names one of the coordinators as the leader, at a term above 0
    And the other coordinator is its only standby
    And the lease in JetStream (bucket "torua_leader", key "leader") names the same leader at the same term
    And the shard map in JetStream (bucket "torua_cluster", key "shard_map") names the same leader at the same term
    And the leader's log says it was elected leader at that term

  Scenario: Coordinator failover to a standby
    Given 120 keys named "coordinator-failover-{n}" are stored
    And the coordinator that leads now, and the one standing by
    And a writer that keeps storing new keys named "while-no-coordinator-leads-{n}" through the gateway, recording every answer
    When the writer has had 20 writes acknowledged
    And the process of the leading coordinator is killed with SIGKILL
    Then the standby becomes the leader at a higher term
    And the shard map in JetStream names the new leader at its term
    When the writer has had 20 more writes acknowledged under the new leader
    And the writer is stopped
    Then no write failed: every answer was 204
    And the new leader sees all 3 nodes healthy
    When the process of the node that is primary of the most shards is killed with SIGKILL
    Then the new leader fails that node's shards over to other healthy nodes, at a higher epoch
    And every shard has an active primary on a healthy node again
    And every key written in this scenario reads back its value
    When the killed coordinator is started again with the same command line
    Then it stands by: the new leader still leads at the same term, with it as its only standby

  Scenario: Split-brain prevention: a deposed leader that wakes cannot change the map
    Given 60 keys named "split-brain-{n}" are stored
    And the coordinator that leads now, and the one standing by
    When the process of the leading coordinator is paused with SIGSTOP
    Then the standby becomes the leader at a higher term
    And the shard map in JetStream names the new leader at its term
    And the new leader sees all 3 nodes healthy
    When the process of the node that is primary of the most shards is killed with SIGKILL
    Then the new leader fails that node's shards over to other healthy nodes, at a higher epoch
    When the paused coordinator is resumed with SIGCONT
    Then its log says it stepped down
    And it stands by again: the new leader still leads at the same term, with it as its only standby
    And since it was resumed it has logged no "shard map epoch" line
    And the shard map in JetStream still names the new leader at its term, and its epoch never went back
    And every healthy node refuses a command carrying the old leader's term with error code "stale_epoch"
    And every healthy node accepts the same command carrying the new leader's term
    And every one of those keys reads back its value

  # NATS queued the drain request for the paused coordinator too (the
  # coordinator's subjects have no queue group; the leader answers). Woken, it
  # ignores requests it no longer leads for, and its node-record writes are
  # compare-and-set, so the operator's undo stands.
  Scenario: Split-brain prevention: a deposed leader that wakes cannot change the node records either
    Given the coordinator that leads now, and the one standing by
    When the process of the leading coordinator is paused with SIGSTOP
    Then the standby becomes the leader at a higher term
    And the new leader sees all 3 nodes healthy
    When node n3 is drained through the gateway, and the drain is undone right away
    Then /nodes shows node n3 as not draining
    When the paused coordinator is resumed with SIGCONT
    Then its log says it stepped down
    And it stands by again: the new leader still leads at the same term, with it as its only standby
    And the node records in JetStream are as they were before it woke: none was written since
    When the process of the new leader is killed with SIGKILL
    Then the coordinator that woke leads again, at a higher term
    And the leader sees all 3 nodes healthy
    And /nodes shows node n3 as not draining
