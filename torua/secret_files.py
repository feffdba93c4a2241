"""Files only their owner may read (keys and seeds in a data dir's `secrets/`),
written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(directory: Path) -> Path:
    """`directory` (and missing parents) made, and it mode 0700 whatever it was."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def write_file(path: Path, data: bytes, private: bool = True) -> None:
    """`data` into `path` through a temp file and a rename, fsynced; 0600 when
    `private` (0644 otherwise, for what others must read, as a CA certificate)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
