@replicas2 @coordinators2
Feature: Cluster management
  Every cluster scenario of the prototype (BRIEF section 9), run for real on a
  cluster of its own: `torua up --replicas 2 --coordinators 2` starts a
  nats-server, coordinators c1 and c2 (one leads, the other stands by), nodes
  n1, n2 and n3 holding two copies of each of 8 shards, and a gateway, each its
  own OS process; scenarios start more nodes (n4, n5) by hand, as an operator
  would, and pause, kill and restart processes with psutil.

  The coordinator places shards so that copies per node differ by at most 1
  over every node that may hold them, never above a node's --max-shards; a new
  cluster's primaries are spread the same way. With replicas, primaries per
  node are kept within 1 by handing the role to another in-sync copy (a
  planned hand-off: no data copied, no copy moved), at most a few at once; load
  rebalancing hands primaries off too, within that rule. A node missing 3
  heartbeats is unhealthy and its primaries fail over to in-sync replicas; one
  that returns catches up, its copies are not moved back, and once in sync it
  leads its share of primaries again by hand-off. Operators see the cluster through
  /cluster/info, /nodes/{id}, /cluster/allocation/explain and /metrics; they
  change its settings through /cluster/config (persisted in JetStream and
  acknowledged by every node), take nodes out of service with maintenance,
  drain and evacuate, and spread a hot load with /cluster/rebalance.

  The lead among coordinators is a lease, the key "leader" in the JetStream KV
  bucket "torua_leader", renewed about every second and expiring 3 s after the
  last renewal; a leader's term is the revision at which it created the key.
  The leader stamps every map and every message to a node with its term, and
  nodes refuse a term below the highest they have seen, so a deposed leader
  that wakes changes nothing.

  Scenarios run in this order and some build on the nodes earlier ones added.
  After each scenario paused processes are resumed, killed ones started again,
  and the cluster is brought back to green, with no move running, one leader
  and one standby.

  Background:
    Given a running Torua cluster
    And the cluster keeps 2 copies of each shard
    And the cluster runs 2 coordinators, each its own process

  Scenario: Initial formation with balanced shards
    When I ask for /shards
    Then it lists 8 shards, numbered 0 to 7, each once
    And every shard has a primary and 1 replica on distinct healthy nodes, every copy in sync
    And the copies per node differ by at most 1 over every node in /nodes, and so do the primaries

  Scenario: Several coordinators agree on one leader
    When I ask for /cluster/info
    Then it names one of the coordinators as the leader, at a term above 0
    And the other coordinator is its only standby
    And the lease in JetStream (bucket "torua_leader", key "leader") names the same leader at the same term
    And the shard map in JetStream (bucket "torua_cluster", key "shard_map") names the same leader at the same term
    And the leader's log says it was elected leader at that term

  Scenario: Cluster info API
    Given 40 keys named "info-{n}" are stored
    When I ask for /cluster/info
    Then it gives the cluster id of the shard map in JetStream
    And it names one of the coordinators as the leader, at a term above 0
    And it counts 3 nodes, 3 of them healthy, and 8 shards, 8 of them assigned
    And its health is green, as /cluster/health says
    And it lists the versions in use, every node's version among them
    And its uptime is above 0 seconds

  Scenario: Node info API
    When I ask for /nodes/n2
    Then it describes node n2 as healthy, holding the copies /shards gives it
    And its pid is the pid of the running "torua node --id n2" process
    And it gives the node's address, version, uptime, last heartbeat and capacity
    And asking for /nodes/no-such-node answers 404 with a JSON error

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

  Scenario: Automatic recovery: a restarted node catches up, its copies do not move back, and it leads its share again by hand-off
    Given 120 keys named "recovery-{n}" are stored
    And some of those keys live on node n1 and some on other nodes
    When the process of node n1 is killed with SIGKILL
    Then node n1 turns unhealthy in /nodes
    And every shard n1 was primary for names another node as its primary, in state "active"
    When I store 60 keys named "written-while-n1-is-down-{n}"
    And node n1 is started again with the same command line
    Then node n1 appears in /nodes as healthy
    And the cluster health becomes green
    And once no move is in progress, the copies per node differ by at most 1 over every node in /nodes, and so do the primaries
    And node n1 holds a copy of the same shards as before the failure, every one in sync: no copy moved back
    And node n1 leads some of those shards again, by hand-off: only roles changed
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

  Scenario: Cluster-wide configuration update, broadcast to every node
    When I ask for /cluster/config
    Then it gives every setting with its value
    When I change the settings to a heartbeat interval of 0.5 s and 3 concurrent moves
    Then the change is accepted and acknowledged by every node
    And /cluster/config shows a heartbeat interval of 0.5 s and 3 concurrent moves
    And the settings in JetStream (bucket "torua_cluster") say the same
    And every node now sends its heartbeats about every 0.5 s
    When I change the settings to an unhealthy threshold of "many"
    Then the change is refused with 400 and error code "bad_request", naming unhealthy_after
    When I change the settings to a low disk watermark of 95 and a high one of 90
    Then the change is refused with 400 and error code "bad_request", naming disk_high_watermark
    And /cluster/config shows a heartbeat interval of 0.5 s and 3 concurrent moves
    When I broadcast a ping to the nodes
    Then every node answers it
    When I change the settings back to what they were
    Then the change is accepted and acknowledged by every node

  Scenario: Prometheus metrics
    Given I note the gateway's metrics
    When I store 25 keys named "metrics-{n}"
    Then the gateway's metrics count 25 more PUT requests answered 204
    And they have a latency histogram for PUT requests
    And the leading coordinator's metrics give the map epoch, itself as leader and 3 healthy nodes
    And each node's metrics give the shard copies it holds, as /shards says

  Scenario: Auto-registration of a new node
    Given 200 keys named "join-{n}" are stored
    When node n4 is started by hand against the cluster's NATS
    Then node n4 appears in /nodes as healthy
    And /nodes/n4 gives the pid of the running "torua node --id n4" process and its version
    And node n4 is given shards
    And every one of those keys reads back its value

  Scenario: Rebalancing after a node joins
    Given node n4 has joined the cluster
    And 100 keys named "rebalance-{n}" are stored
    Then once no move is in progress, the copies per node differ by at most 1 over every node in /nodes
    And every shard has a primary and 1 replica on distinct healthy nodes, every copy in sync
    And every one of those keys reads back its value

  Scenario: Node capacity limits
    Given 100 keys named "capacity-{n}" are stored
    When node n5 is started by hand with --max-shards 1
    Then node n5 appears in /nodes as healthy
    And /nodes/n5 gives its capacity as 1 shard
    And once no move is in progress, node n5 holds 1 shard copy and never held more
    And the copies of the other nodes differ by at most 1
    And the allocation explanation of a shard n5 does not hold says n5 is at its max_shards
    And every one of those keys reads back its value

  Scenario: Bulk maintenance mode for several nodes
    Given 100 keys named "maintenance-{n}" are stored
    When I put nodes n4 and n5 into maintenance with drain
    Then /nodes shows nodes n4 and n5 in maintenance
    And once no move is in progress, nodes n4 and n5 hold no shard copy
    And the allocation explanation of shard 0 says n4 and n5 are in maintenance
    And every one of those keys reads back its value
    When I take nodes n4 and n5 out of maintenance
    Then /nodes shows nodes n4 and n5 out of maintenance
    And node n4 is given shards
    And every one of those keys reads back its value

  Scenario: Emergency evacuation of a node
    Given 100 keys named "evacuate-{n}" are stored
    When I evacuate node n4
    Then /nodes/n4 shows it evacuated, holding no shard copy
    And every shard has a primary and 1 replica on distinct healthy nodes, every copy in sync
    And every one of those keys reads back its value
    When I put nodes n2, n3 and n5 into maintenance without drain
    And I ask to evacuate node n1
    Then the evacuation is refused with 409 and a message that says why, and that nothing changed
    And node n1 still holds its shard copies and is not evacuating
    When I take nodes n2, n3 and n5 out of maintenance
    And I undo the evacuation of node n4
    Then node n4 is given shards


  Scenario: Load-based rebalancing of hot shards
    Given once copies and primaries per node are balanced, 2 shards whose primaries share a node, as many as any node leads
    When a client keeps reading and writing keys of only those 2 shards until the nodes report the load
    And I ask the coordinator to rebalance by load
    Then it moves one of those shards' primaries to another node
    And once no move is in progress, those 2 shards have their primaries on different nodes
    And once no move is in progress, the copies per node differ by at most 1 over every node in /nodes
    When I ask the coordinator to rebalance by load again under the same load
    Then it finds nothing to do
    And every key written in this scenario reads back its value

  Scenario: Rolling upgrade: every node restarted in turn under write load, and an incompatible build refused
    Given a writer that keeps storing new keys named "rolling-{n}" through the gateway, recording every answer
    When every node in turn is drained, stopped, started again and undrained, the cluster green in between
    And the writer is stopped
    Then no write failed: every answer was 204
    And every key written in this scenario reads back its value
    And /cluster/info lists the version every node reports
    When a node of a build two protocol versions newer sends a heartbeat
    Then the leader refuses it with a clear error, and that node never joins
