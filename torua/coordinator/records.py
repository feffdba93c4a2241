"""What the leading coordinator keeps about each node: plain data.

One `NodeRecord` per node that ever joined. The operator's flags and where the
node last ran are stored in JetStream (`persisted`); the rest (its last heartbeat,
its health, copies it lacks) is rebuilt from heartbeats by each new leader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torua.coordinator import copy_reports
from torua.coordinator.placement import DISK_OK
from torua.protocol.messages import Heartbeat
from torua.protocol.vocabulary import NodeHealth


@dataclass
class NodeRecord:
    id: str
    first_seen: float
    draining: bool = False
    last_seen: float | None = None  # monotonic clock of the last heartbeat
    last_wall: float | None = None
    heartbeat: Heartbeat | None = None
    protocol: int = 0  # `v` of the last heartbeat
    status: NodeHealth = NodeHealth.UNKNOWN
    unhealthy_since: float | None = None  # monotonic
    assigning: bool = False
    last_assign: float = 0.0
    dropping: set[int] = field(default_factory=set)
    maintenance: bool = False  # no new copies here (POST /nodes/maintenance)
    evacuating: bool = False  # every copy moves off (POST /nodes/{id}/evacuate)
    disk_level: str = DISK_OK  # as last judged, to notice a change
    stopping_of: float | None = None  # started_at of the process that asked for a hand-off (SIGTERM)
    # shard -> heartbeats in a row that lacked a copy the map counts on here (copy_reports)
    missing_streaks: dict[int, int] = field(default_factory=dict)
    # where it last ran (its heartbeat's host and data_dir), kept so that a node gone
    # since can be started again (`torua up` prints the command)
    host: str = ""
    data_dir: str = ""

    def missing(self) -> set[int]:
        """Shards the map counts on this node for that its heartbeats say it does not have."""
        return copy_reports.confirmed(self.missing_streaks) if self.status == NodeHealth.HEALTHY else set()

    def persisted(self) -> dict[str, Any]:
        return {
            "id": self.id, "first_seen": self.first_seen, "draining": self.draining,
            "maintenance": self.maintenance, "evacuating": self.evacuating,
            "host": self.host, "data_dir": self.data_dir,
        }
