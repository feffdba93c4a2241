"""docs/protocol.md writes each wire message as ``Name { field, field: type, ... }``
in its code blocks: every dataclass of torua/protocol/messages.py that goes on the
wire is written there once, naming exactly its fields (``v``, the protocol version
the codec adds to a message sent on its own, aside). A ``# ...`` comment runs to
the end of its line; anything between the commas that is not a field (an elision
such as ``...``) is refused."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from torua.protocol import messages

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
FIELD = re.compile(r"(\w+)\s*(:.*)?", re.S)  # a name, then its type

# Dataclasses of messages.py that never go on the wire, each with the reason.
# (None today: every one is a message of a subject or is carried inside one.)
INTERNAL: dict[str, str] = {}

CLASSES = {
    name: cls
    for name, cls in vars(messages).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == messages.__name__
}


def _nested(hint: typing.Any) -> set[str]:
    """The dataclasses a field of type `hint` carries (``list[X]``, ``X | None``, ...)."""
    if dataclasses.is_dataclass(hint):
        return {hint.__name__}
    return set().union(*(_nested(arg) for arg in typing.get_args(hint)))


# Each message class -> the message classes its fields carry.
CARRIES = {name: set().union(*map(_nested, typing.get_type_hints(cls).values())) for name, cls in CLASSES.items()}
CARRIED = set().union(*CARRIES.values())
# Sent on their own: the payload or the reply of a subject (docs/protocol.md, Subjects).
TOP_LEVEL = set(CLASSES) - CARRIED - set(INTERNAL)


def _split(body: str) -> list[str]:
    """`body` split at its commas that are outside ``()``, ``[]`` and ``{}``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body + ","):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    return parts


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """Every ``Name { ... }`` at the start of a line in a code block of `text`, as
    (Name, the parts between its commas), comments removed."""
    found = []
    for fence in re.findall(r"```\n(.*?)```", text, re.S):
        fence = re.sub(r"#[^\n]*", "", fence)
        for match in re.finditer(r"^(\w+)\s*\{", fence, re.M):
            depth, i = 1, match.end()
            while depth and i < len(fence):
                depth += {"{": 1, "}": -1}.get(fence[i], 0)
                i += 1
            found.append((match.group(1), _split(fence[match.end():i - 1])))
    return found


def documented(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """Each message class written in `text` -> its fields as written; and what is wrong
    with how they are written (an elision or other text that is not a field, a
    message or a field written twice)."""
    found: dict[str, list[str]] = {}
    problems = []
    for name, parts in blocks(text):
        if name not in CLASSES:
            continue  # e.g. Refusal: not a dataclass
        if name in found:
            problems.append(f"{name} is written twice")
        fields = []
        for part in filter(None, parts):
            match = FIELD.fullmatch(part)
            if match is None:
                problems.append(f"{name}: {part!r} is not a field")
            elif match.group(1) != "v":
                fields.append(match.group(1))
        duplicates = sorted({f for f in fields if fields.count(f) > 1})
        if duplicates:
            problems.append(f"{name}: {duplicates} written twice")
        found[name] = fields
    return found, problems


DOCUMENTED, PROBLEMS = documented(PROTOCOL)


@pytest.mark.parametrize(
    ("text", "fields", "problems"),
    [
        ("```\nAck { v, ok,   # a comment, with commas\n      error_code }\n```", ["ok", "error_code"], []),
        ("```\nAck { v, ok: bool, detail: {str: str}, pairs: [(int, int)] }\n```", ["ok", "detail", "pairs"], []),
        ("```\nAck { v, ok, ... }\n```", ["ok"], ["Ack: '...' is not a field"]),
        ("```\nAck { ok, ok }\n```", ["ok", "ok"], ["Ack: ['ok'] written twice"]),
        ("```\nRefusal { v, refused: { code: str } }\n```", None, []),
    ],
)
def test_the_parser(text, fields, problems):
    found, found_problems = documented(text)
    assert found.get("Ack") == fields
    assert found_problems == problems


def test_internal_classes_are_carried_by_no_wire_message():
    assert set(INTERNAL) <= set(CLASSES), sorted(set(INTERNAL) - set(CLASSES))
    carried_by_wire = {name for wire in set(CLASSES) - set(INTERNAL) for name in CARRIES[wire]}
    assert not set(INTERNAL) & carried_by_wire, sorted(set(INTERNAL) & carried_by_wire)


def test_each_message_sent_on_its_own_has_a_subject():
    subjects = PROTOCOL.split("## Subjects", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+)(?:\{[^}]*\})?`", subjects))
    assert TOP_LEVEL <= named, f"in no row of docs/protocol.md#subjects: {sorted(TOP_LEVEL - named)}"


def test_the_messages_are_written_without_elisions():
    assert not PROBLEMS, PROBLEMS


@pytest.mark.parametrize("name", sorted(set(CLASSES) - set(INTERNAL)))
def test_a_wire_message_names_exactly_its_fields(name):
    fields = {f.name for f in dataclasses.fields(CLASSES[name])}
    assert name in DOCUMENTED, f"{name} is not in docs/protocol.md"
    written = set(DOCUMENTED[name])
    assert written == fields, f"docs/protocol.md {name}: missing {sorted(fields - written)}, not a field {sorted(written - fields)}"
