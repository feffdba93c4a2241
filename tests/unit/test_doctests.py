"""Every docstring example in `torua` runs, exactly as written (no ELLIPSIS or
other leniency): an example that no longer matches the code fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import torua


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(torua.__path__, "torua."):
        if info.name.endswith("__main__"):
            continue  # running it is the command line, not an example
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_examples_are_found():
    assert "torua.protocol.codec" in MODULES and "torua.keys" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=0, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail; run python -m doctest -v on it"
