"""Torua: a distributed store for GraphRAG over NATS."""

__version__ = "0.3.0"

from torua.client import Client  # noqa: E402

__all__ = ["Client", "__version__"]
