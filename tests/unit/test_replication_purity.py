"""The replication and leadership decisions stay pure: no NATS, no event loop, no clock, no files."""

import ast
from pathlib import Path

import pytest

import torua.leadership
import torua.replication

PACKAGE = Path(torua.replication.__file__).parent
PURE_MODULES = sorted(PACKAGE.glob("*.py")) + [Path(torua.leadership.__file__)]
FORBIDDEN = {"nats", "asyncio", "time", "datetime", "os", "socket", "sqlite3", "pathlib", "random"}


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: p.name)
def test_module_imports_nothing_with_effects(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
    assert "open(" not in path.read_text()
