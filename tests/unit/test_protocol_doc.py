"""docs/protocol.md writes each wire message as ``Name { field, field: type, ... }``:
each graph message there names exactly the fields of its dataclass in
torua/protocol/messages.py (``v``, the protocol version the codec adds, aside).
(Only the graph's for now: the older messages' blocks hold comments and elisions.)"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from torua.protocol import messages

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^(\w+)\s*\{(.*?)\}\s*$", re.S | re.M)


def documented() -> dict[str, set[str]]:
    """Every ``Name { ... }`` in a code block of docs/protocol.md whose Name is a message class."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    found: dict[str, set[str]] = {}
    for fence in re.findall(r"```\n(.*?)```", text, re.S):
        # a block runs from "Name {" to the matching "}" (field types hold no braces but {..})
        for match in re.finditer(r"^(\w+)\s*\{", fence, re.M):
            name, depth, i = match.group(1), 1, match.end()
            while depth and i < len(fence):
                depth += {"{": 1, "}": -1}.get(fence[i], 0)
                i += 1
            body = re.sub(r"\{[^{}]*\}", "", fence[match.end():i - 1])  # types such as {str: int}
            if dataclasses.is_dataclass(getattr(messages, name, None)):
                fields = {re.split(r"[:?\s]", part.strip())[0] for part in body.split(",") if part.strip()}
                found[name] = {f for f in fields if f and f != "v"}
    return found


DOCUMENTED = documented()
GRAPH_MESSAGES = ["EdgeData", "EdgeHalf", "GraphHit", "GraphRef", "GraphReply", "GraphRequest", "ImportProblem", "VertexData"]


def test_the_graph_messages_are_documented():
    assert set(GRAPH_MESSAGES) <= set(DOCUMENTED), sorted(set(GRAPH_MESSAGES) - set(DOCUMENTED))


@pytest.mark.parametrize("name", GRAPH_MESSAGES)
def test_a_documented_message_names_exactly_its_fields(name):
    fields = {f.name for f in dataclasses.fields(getattr(messages, name))}
    assert name in DOCUMENTED, f"{name} is not in docs/protocol.md"
    assert DOCUMENTED[name] == fields, f"docs/protocol.md {name}: missing {sorted(fields - DOCUMENTED[name])}, not a field {sorted(DOCUMENTED[name] - fields)}"
