"""A client thread that writes unique keys and remembers what was acknowledged."""

from __future__ import annotations

import threading


class Writer(threading.Thread):
    """Writes unique keys until stopped; remembers what was acknowledged."""

    def __init__(self, c, prefix: str) -> None:
        super().__init__(daemon=True)
        self.c, self.prefix = c, prefix
        self.acked: dict[str, bytes] = {}
        self.failures: list[tuple[str, int]] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            key, value = f"{self.prefix}-{i}", f"v{i}".encode()
            status = self.c.request("PUT", f"/data/{key}", value)[0]
            if status == 204:
                self.acked[key] = value
            else:
                self.failures.append((key, status))
            i += 1

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(30)
