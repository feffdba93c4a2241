"""`torua graph import`'s own parts (torua.cli.graph): which pass a line goes in,
batches, the gateway's line numbers back to the file's, and what it shows."""

from __future__ import annotations

import io

from torua.cli.graph import ImportTally, Progress, in_batches, line_kind, numbered


def test_vertex_lines_go_first_and_lines_that_are_neither_with_them():
    assert [line_kind(x) for x in [b'{"vertex": {"id": "a"}}', b'{"edge": {}}', b"nope", b'{"edge": {}, "vertex": {}}', b"[1]"]] == [
        "vertex", "edge", "vertex", "vertex", "vertex",
    ]


def test_batches_skip_blank_lines_and_keep_file_numbers():
    lines = list(numbered(io.BytesIO(b"a\r\n\nbb\n   \ncc\n")))
    assert lines == [(1, b"a"), (2, b""), (3, b"bb"), (4, b"   "), (5, b"cc")]
    assert [[n for n, _ in b] for b in in_batches(lines, max_bytes=100, max_lines=2)] == [[1, 3], [5]]


def test_the_gateways_line_numbers_are_the_files():
    tally = ImportTally()
    batch = [(10, b"x"), (12, b"y"), (40, b"z")]
    tally.take(batch, {"vertices": 1, "edges": 0, "errors": [{"line": 2, "error": "bad"}, {"line": 3, "error": "worse"}]})
    assert tally.errors == [(12, "bad"), (40, "worse")] and tally.lines == 3 and tally.vertices == 1
    assert tally.summary() == "3 lines: 1 vertices, 0 edges applied, 2 not applied"


def test_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    tally = ImportTally(lines=50, vertices=50)
    bar, lines = io.StringIO(), io.StringIO()
    Progress(bar, True, 200).show(tally, 100, "vertices")
    Progress(lines, False, 200).show(tally, 100, "vertices")
    assert bar.getvalue().startswith("\r[###############...............]  50% vertices: 50 lines") and "\n" not in bar.getvalue()
    assert lines.getvalue().startswith("vertices: 50 lines: 50 vertices") and lines.getvalue().endswith("\n")
