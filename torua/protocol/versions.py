"""Which protocol versions can talk to each other: the rule a rolling upgrade relies on.

Every message carries the protocol version of the build that wrote it (field `v`).
A build writes `PROTOCOL_VERSION` and reads every version from
`OLDEST_PROTOCOL_VERSION` up to one past its own:

- older, down to `OLDEST_PROTOCOL_VERSION`: a field added since is missing from
  such a message and takes its default;
- one newer: version N+1 may only *add* fields with defaults (never remove one
  or change what one means), so a build of N reads an N+1 message by ignoring
  the fields it does not know. That is what lets a cluster run both builds
  while it is upgraded one process at a time;
- anything else (two or more newer, older than the oldest, missing, not an
  integer) is refused with `unsupported_version`.

A change that cannot follow the additive rule must wait a release: N+1 keeps
reading N and writes only what N reads, and N+2 may then drop N.

Pure: no I/O.

>>> compatible(ours=3, theirs=4, oldest=2), compatible(ours=3, theirs=1, oldest=2)
(True, False)
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = 1
"""What this build writes in every message's `v`."""

OLDEST_PROTOCOL_VERSION = 1
"""The oldest `v` this build still reads. Keep it at most PROTOCOL_VERSION - 1
once PROTOCOL_VERSION > 1, so that each version reads the one before it."""

NEWER_READ = 1
"""How many versions past its own a build reads (additive changes only)."""


def compatible(ours: int, theirs: Any, oldest: int) -> bool:
    """Whether a build that writes `ours` and reads back to `oldest` accepts a
    message (or a peer) of protocol version `theirs`."""
    if not isinstance(theirs, int) or isinstance(theirs, bool):
        return False
    return oldest <= theirs <= ours + NEWER_READ


def accepts(theirs: Any) -> bool:
    """Whether this build accepts a message of protocol version `theirs`."""
    return compatible(PROTOCOL_VERSION, theirs, OLDEST_PROTOCOL_VERSION)


def spoken(ours: int = PROTOCOL_VERSION, oldest: int = OLDEST_PROTOCOL_VERSION) -> str:
    """The versions a build reads, for people: `1..2` (or `2` when it is one)."""
    newest = ours + NEWER_READ
    return f"{oldest}..{newest}" if oldest != newest else str(oldest)


def refusal_reason(
    theirs: Any, speaker: str = "this process", sender: str = "the sender", ours: int = PROTOCOL_VERSION, oldest: int = OLDEST_PROTOCOL_VERSION
) -> str:
    """Why a message of version `theirs` is refused, and what to do about it.

    >>> refusal_reason(1, "coordinator c1", "node n4", ours=3, oldest=2)
    'protocol version 1 not supported (coordinator c1 speaks 2..4); upgrade node n4 to a release that speaks one of 2..4'
    """
    reads = spoken(ours, oldest)
    head = f"protocol version {theirs!r} not supported ({speaker} speaks {reads})"
    if not isinstance(theirs, int) or isinstance(theirs, bool):
        return f"{head}: the message has no valid version field `v`"
    if theirs < oldest:
        return f"{head}; upgrade {sender} to a release that speaks one of {reads}"
    return f"{head}; upgrade {speaker} first: a rolling upgrade goes one protocol version at a time"
