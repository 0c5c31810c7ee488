"""The issue #16 coverage table of docs/network.md ("Tests") stays true: every test it names
exists, and every row says, in each of its live and replay columns, which test proves it or why
none does (another branch owns it today, or it is not live and says why).

A node id is checked statically (the file exists and defines a module-level ``test_…``
function of that name, read with :mod:`ast`), because the live tests skip at collection without
root; a parametrize id in brackets is not checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "network.md"
HEADING = "### Issue #16 coverage"
NODE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)(\[[^`]*\])?`")
REASON = ("not live", "not built yet", "measured by `make bench`")


def table_rows() -> list[list[str]]:
    text = DOC.read_text()
    start = text.index(HEADING)
    end = text.find("\n#", start + len(HEADING))
    rows = []
    for line in text[start:end if end >= 0 else None].splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append(cells)
    assert rows and rows[0] == ["row or item", "live", "replay"], rows[:1]
    return rows[1:]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {n.name for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")}


def test_every_named_test_exists() -> None:
    missing = []
    seen = 0
    for row in table_rows():
        for cell in row[1:]:
            for file, name, _ in NODE.findall(cell):
                seen += 1
                path = REPO / file
                if not path.is_file() or name not in defined_tests(path):
                    missing.append(f"{row[0]}: {file}::{name}")
    assert seen >= 20
    assert missing == [], missing


def test_every_row_has_a_test_or_a_reason_in_both_columns() -> None:
    rows = table_rows()
    assert len(rows) >= 15
    for row in rows:
        assert len(row) == 3, row
        for column, cell in zip(("live", "replay"), row[1:], strict=True):
            assert NODE.search(cell) or cell.startswith("the same") \
                or any(r in cell for r in REASON), f"{row[0]} ({column}): {cell!r}"
        # "the same" in the replay column means the live test replays its own capture
        if row[2].startswith("the same"):
            assert NODE.search(row[1]), row


def source_of(path: Path, name: str) -> str:
    text = path.read_text()
    for n in ast.parse(text, str(path)).body:
        if isinstance(n, ast.FunctionDef) and n.name == name:
            return ast.get_source_segment(text, n) or ""
    return ""


def test_a_live_test_standing_for_replay_too_replays() -> None:
    """"the same" in the replay column is only true of a live test that replays its capture
    (``run.replay()``/``run.compare()`` of tests/network/toolrun.py) and checks the rule's
    ATT&CK technique or its silence."""
    wrong = []
    for row in table_rows():
        if not row[2].startswith("the same"):
            continue
        for file, name, _ in NODE.findall(row[1]):
            body = source_of(REPO / file, name)
            if not re.search(r"\.(replay|compare)\(", body):
                wrong.append(f"{row[0]}: {name} does not replay")
    assert wrong == [], wrong


def test_the_checker_sees_a_missing_test() -> None:
    ghost = "`tests/network/test_scan_tools.py::test_no_such_scan`"
    file, name, _ = NODE.findall(ghost)[0]
    assert name not in defined_tests(REPO / file)
    assert "test_nmap_scan_live_and_replayed" in defined_tests(REPO / file)
    assert source_of(REPO / file, "test_nmap_scan_live_and_replayed")
    assert not re.search(r"\.(replay|compare)\(", source_of(REPO / file, "_check"))
