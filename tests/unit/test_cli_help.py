"""Every `torua ... --help` prints its help: a help text argparse cannot format
(a bare `%`, say) crashes the command instead of helping."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from torua.cli.main import parser


def _commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, path + (name,))
    return found


COMMANDS = _commands(parser())


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"up", "coordinator", "node", "gateway", "kv get", "kv put", "status", "bench", "graph import", "graph traverse", "graph search", "graph cypher", "graph get"} <= names


@pytest.mark.parametrize("path,sub", COMMANDS, ids=[" ".join(path) or "torua" for path, _ in COMMANDS])
def test_help_formats(path, sub):
    text = sub.format_help()
    assert text.startswith("usage: torua")
    for action in sub._actions:
        if action.option_strings and action.help not in (None, argparse.SUPPRESS):
            assert action.option_strings[-1] in text


@pytest.mark.parametrize("command", ["up", "coordinator", "node", "gateway", "kv", "status", "bench", "graph"])
def test_help_from_the_command_line(command):
    done = subprocess.run([sys.executable, "-m", "torua", command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: torua {command}")
    assert "Traceback" not in done.stderr


def test_a_reader_that_leaves_early_ends_a_command_quietly():
    """`torua ... | head`: the pipe closed under the command's output is no traceback
    (exit 141, as a Unix tool's SIGPIPE), whatever command wrote it."""
    script = (
        "import sys\n"
        "from torua.cli import main as cli\n"
        "def write(args):\n"
        "    while True:\n"
        "        print('a line of output ' * 8)\n"
        "cli._dispatch = write\n"
        "sys.exit(cli.main(['status']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader leaves
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
