"""Keep pandas out of a process that hands pyarrow and Kuzu only Python lists and
Arrow tables (a node's graph indexes, a worker's community runs).

Neither needs pandas, but both look for it when it is installed (`torua bench`'s
LightRAG extra brings it): pyarrow imports it on the first array it makes (to ask
whether the list given is a pandas object), and Kuzu's binding on the first query
given an Arrow table (whether it is a DataFrame). That import cost each node ~0.27 s
of CPU and 45 MiB of RSS (measured here), a second of CPU over the three nodes of
`torua bench --rag`, spent while the first documents were written.

`keep_pandas_out()`, once at a process's start: pyarrow's look (once per process)
finds no pandas, and `importlib.util.find_spec("pandas")`, which Kuzu's binding asks,
answers None. An `import pandas` in this process then fails: nothing of Torua's
outside the benchmarks' anchors imports it.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

import pyarrow as pa


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError("this process keeps pandas out (torua.arrow_only)", name=fullname)
        return None


def keep_pandas_out() -> bool:
    """Whether pandas is kept out (False: it was imported already, nothing to gain)."""
    if sys.modules.get("pandas", False) is not False:
        return sys.modules["pandas"] is None
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow looks for pandas once per process: it finds none
    finally:
        sys.meta_path.remove(finder)
    sys.modules["pandas"] = None  # type: ignore[assignment]  # find_spec answers None, import fails
    return True
