"""Torua: a distributed store for GraphRAG over NATS."""

from __future__ import annotations

import warnings
from typing import Any

__version__ = "0.4.0"

from torua.client import Client  # noqa: E402
from torua.protocol.errors import ToruaError  # noqa: E402

__all__ = ["Client", "ToruaError", "__version__"]


def __getattr__(name: str) -> Any:
    """`torua.TouraError`, the old misspelt name, still works for now, with a warning."""
    if name == "TouraError":
        warnings.warn("torua.TouraError is deprecated; use torua.ToruaError", DeprecationWarning, stacklevel=2)
        return ToruaError
    raise AttributeError(f"module 'torua' has no attribute {name!r}")
