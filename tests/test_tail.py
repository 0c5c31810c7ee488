"""FileTailer: partial lines, rotation, copytruncate, restart offsets, over-long lines."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.logs.tailer import FileTailer, OffsetStore


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.log"


def tailer(path: Path, store: OffsetStore | None = None, **kwargs: int | bool) -> FileTailer:
    return FileTailer(path, store or OffsetStore(None), **kwargs)  # type: ignore[arg-type]


def test_reads_complete_lines_and_holds_the_partial_last_line(log: Path) -> None:
    append(log, b"one\ntwo\nthr")
    t = tailer(log)
    assert t.read().lines == [b"one", b"two"]
    assert t.read().lines == []
    append(log, b"ee\nfour")
    assert t.read().lines == [b"three"]
    append(log, b"\n")
    assert t.read().lines == [b"four"]


def test_missing_file_is_empty_until_it_appears(log: Path) -> None:
    t = tailer(log)
    result = t.read()
    assert result.lines == [] and not result.rotated
    append(log, b"hello\n")
    assert t.read().lines == [b"hello"]


def test_start_at_end_skips_history_only_without_saved_offset(log: Path) -> None:
    append(log, b"old\n")
    t = tailer(log, start_at_end=True)
    assert t.read().lines == []
    append(log, b"new\n")
    assert t.read().lines == [b"new"]


def test_rename_rotation_drains_old_file_then_reads_new(log: Path) -> None:
    append(log, b"a\n")
    t = tailer(log)
    assert t.read().lines == [b"a"]
    append(log, b"b\nlast-without-newline")
    os.rename(log, log.with_suffix(".log.1"))
    append(log, b"c\n")
    result = t.read()
    assert result.rotated
    assert result.lines == [b"b", b"last-without-newline", b"c"]
    append(log, b"d\n")
    assert t.read().lines == [b"d"]


def test_rotation_while_new_file_not_created_yet(log: Path) -> None:
    append(log, b"a\n")
    t = tailer(log)
    t.read()
    append(log, b"b\n")
    os.rename(log, log.with_suffix(".log.1"))
    assert t.read().lines == [b"b"]  # path missing: keep the old handle
    append(log, b"c\n")
    result = t.read()
    assert result.rotated and result.lines == [b"c"]


def test_copytruncate_starts_again_at_zero(log: Path) -> None:
    append(log, b"first line\nsecond line\n")
    t = tailer(log)
    assert len(t.read().lines) == 2
    with log.open("r+b") as handle:
        handle.truncate(0)
    append(log, b"x\n")
    result = t.read()
    assert result.shrunk
    assert result.lines == [b"x"]


def test_restart_resumes_from_persisted_offset(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state" / "offsets.json"
    append(log, b"one\ntwo\npart")
    store = OffsetStore(state)
    t = tailer(log, store)
    assert t.read().lines == [b"one", b"two"]
    t.close()
    store.save()
    saved = json.loads(state.read_text())
    assert saved == {str(log): {"inode": log.stat().st_ino, "offset": len(b"one\ntwo\n")}}

    append(log, b"ial\nthree\n")
    again = tailer(log, OffsetStore(state), start_at_end=True)
    assert again.read().lines == [b"partial", b"three"]


def test_inode_change_while_down_reads_new_file_from_start(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "offsets.json"
    append(log, b"old content that was read\n")
    store = OffsetStore(state)
    t = tailer(log, store)
    t.read()
    t.close()
    store.save()
    os.rename(log, log.with_suffix(".log.1"))
    append(log, b"fresh\n")
    assert tailer(log, OffsetStore(state)).read().lines == [b"fresh"]


def test_saved_offset_beyond_the_file_restarts_at_zero(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "offsets.json"
    append(log, b"short\n")
    state.write_text(json.dumps({str(log): {"inode": log.stat().st_ino, "offset": 10_000}}))
    result = tailer(log, OffsetStore(state)).read()
    assert result.shrunk and result.lines == [b"short"]


@pytest.mark.parametrize(
    "content",
    ["not json", "[1, 2]", '{"k": 5}', '{"k": {"inode": "x", "offset": "y"}}'],
)
def test_corrupt_offset_file_is_ignored(log: Path, tmp_path: Path, content: str) -> None:
    state = tmp_path / "offsets.json"
    state.write_text(content.replace('"k"', json.dumps(str(log))))
    append(log, b"line\n")
    assert tailer(log, OffsetStore(state)).read().lines == [b"line"]


def test_offset_store_save_is_atomic_and_creates_dirs(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "offsets.json"
    store = OffsetStore(state)
    store.set("k", 1, 2)
    store.save()
    assert json.loads(state.read_text()) == {"k": {"inode": 1, "offset": 2}}
    assert not state.with_name("offsets.json.tmp").exists()
    assert OffsetStore(state).get("k") == (1, 2)
    assert OffsetStore(None).get("k") is None
    OffsetStore(None).save()  # no path: nothing to do


def test_over_long_complete_line_is_cut_and_counted(log: Path) -> None:
    append(log, b"x" * 50 + b"\nok\n")
    result = tailer(log, max_line_bytes=16).read()
    assert result.lines == [b"x" * 16, b"ok"]
    assert result.truncated_lines == 1


def test_over_long_partial_line_is_not_buffered(log: Path) -> None:
    t = tailer(log, max_line_bytes=16)
    append(log, b"y" * 40)
    result = t.read()
    assert result.lines == [b"y" * 16] and result.truncated_lines == 1
    append(log, b"y" * 40)
    assert t.read().lines == []  # still inside the cut line: skipped, not kept in memory
    append(log, b"yyy\nnext\n")
    assert t.read().lines == [b"next"]


def test_truncation_while_skipping_a_long_line_does_not_eat_the_next_line(log: Path) -> None:
    t = tailer(log, max_line_bytes=8)
    append(log, b"z" * 30)
    assert t.read().lines == [b"z" * 8]
    with log.open("r+b") as handle:
        handle.truncate(0)
    append(log, b"after\n")
    result = t.read()
    assert result.shrunk and result.lines == [b"after"]


def test_max_read_bytes_bounds_one_call(log: Path) -> None:
    append(log, b"".join(b"line%03d\n" % i for i in range(100)))
    t = tailer(log, max_read_bytes=64)
    first = t.read().lines
    assert first == [b"line%03d" % i for i in range(8)]
    rest: list[bytes] = []
    for _ in range(20):
        rest += t.read().lines
    assert first + rest == [b"line%03d" % i for i in range(100)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=16),
)
def test_any_chunking_of_appends_yields_the_same_lines(
    lines: list[bytes], cuts: list[int], max_line: int
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunked.log"
        path.write_bytes(b"")
        t = tailer(path, max_line_bytes=max_line)
        got: list[bytes] = []
        cut_count = 0
        pos = 0
        for cut in cuts:
            append(path, data[pos : pos + cut])
            pos += cut
            result = t.read()
            got += result.lines
            cut_count += result.truncated_lines
        append(path, data[pos:])
        result = t.read()
        got += result.lines
        cut_count += result.truncated_lines
        t.close()
    assert got == [line[:max_line] for line in lines]
    assert cut_count == sum(1 for line in lines if len(line) > max_line)
