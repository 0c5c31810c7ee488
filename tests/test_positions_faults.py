"""Source positions attacked as a faulty disk, a kill -9 and an operator would: a damaged or
unreadable offsets file, a rename rotation while the agent was down, a rotation with a backlog
larger than one read. Each loses no line (lines read again are duplicates with the same alert
ids) and a refused positions file is counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.base import CollectorContext
from agent.collectors.logs.tailer import FileTailer, OffsetStore
from agent.metrics import AgentMetrics


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def _read_all(tailer: FileTailer, rounds: int = 50) -> list[bytes]:
    lines: list[bytes] = []
    for _ in range(rounds):
        result = tailer.read()
        if not result.lines and not result.rotated:
            break
        lines.extend(result.lines)
    return lines


def _saved_run(log: Path, state: Path) -> None:
    """A previous run that read (and acknowledged) everything in ``log``."""
    store = OffsetStore(state)
    tailer = FileTailer(log, store, start_at_end=True)
    tailer.read()
    tailer.close()
    store.save()


@pytest.mark.parametrize("damage", [
    b"", b"{\"", b"not json", b"[1, 2]", b'{"K": 5}', b'{"K": {"inode": "x", "offset": 1}}',
    b'{"K": {"inode": 1, "offset": -4}}', b"\xff\xfe garbage", b"{\"K\": {\"inode\": 1, \"off",
])
def test_a_damaged_positions_file_reads_the_log_from_its_start_not_its_end(
    tmp_path: Path, damage: bytes
) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"read before the crash\n")
    _saved_run(log, state)
    _append(log, b"written while the agent was down\n")
    state.write_bytes(damage.replace(b"K", json.dumps(str(log)).strip('"').encode()))
    problems: list[str] = []
    store = OffsetStore(state, on_problem=problems.append)
    assert store.damaged and problems == ["positions_damaged"]
    lines = FileTailer(log, store, start_at_end=True).read().lines
    # start_at_end would have skipped the line written while down: it is read (with the older
    # one, a duplicate)
    assert lines == [b"read before the crash", b"written while the agent was down"]
    assert state.with_name("offsets.json.refused").read_bytes() == damage.replace(
        b"K", json.dumps(str(log)).strip('"').encode())
    store.save()  # the next save writes a good file again
    assert not OffsetStore(state).damaged


def test_a_missing_positions_file_is_a_first_start_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    _append(log, b"history before the agent was installed\n")
    problems: list[str] = []
    store = OffsetStore(tmp_path / "offsets.json", on_problem=problems.append)
    assert not store.damaged and problems == []
    assert FileTailer(log, store, start_at_end=True).read().lines == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file")
def test_an_unreadable_positions_file_is_counted_and_reads_from_the_start(
    tmp_path: Path
) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"one\n")
    _saved_run(log, state)
    state.chmod(0)
    problems: list[str] = []
    store = OffsetStore(state, on_problem=problems.append)
    assert problems == ["positions_unreadable"]
    assert FileTailer(log, store, start_at_end=True).read().lines == [b"one"]


def test_a_directory_in_place_of_the_positions_file_is_counted_unreadable(
    tmp_path: Path
) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"one\n")
    state.mkdir()  # EISDIR even for root
    problems: list[str] = []
    store = OffsetStore(state, on_problem=problems.append)
    assert problems == ["positions_unreadable"] and store.damaged
    assert FileTailer(log, store, start_at_end=True).read().lines == [b"one"]


def test_the_daemon_counts_a_refused_positions_file(tmp_path: Path) -> None:
    metrics = AgentMetrics(CollectorRegistry())
    (tmp_path / "offsets-auth-logs.json").write_text("{torn")
    ctx = CollectorContext(None, None, metrics, tmp_path)  # type: ignore[arg-type]
    store = OffsetStore(tmp_path / "offsets-auth-logs.json", on_problem=ctx.state_problem)
    assert store.damaged
    assert metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": "positions_damaged"}) == 1


@pytest.mark.parametrize("rotated_name", ["auth.log.1", "auth.log-20261207"])
def test_rename_rotation_while_the_agent_was_down_finishes_the_old_file_first(
    tmp_path: Path, rotated_name: str
) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"acknowledged\n")
    _saved_run(log, state)
    # after the kill -9: the old file gets more lines, then logrotate renames it and the
    # writer starts a new file
    _append(log, b"old file, after the position\n")
    (tmp_path / "auth.log.2.gz").write_bytes(b"\x1f\x8b not read")
    os.rename(log, tmp_path / rotated_name)
    _append(log, b"new file\n")
    tailer = FileTailer(log, OffsetStore(state), start_at_end=True)
    assert _read_all(tailer) == [b"old file, after the position", b"new file"]


def test_rotation_while_down_with_the_old_file_gone_reads_the_new_one(tmp_path: Path) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"acknowledged\n")
    _saved_run(log, state)
    os.rename(log, tmp_path / "auth.log.1")
    (tmp_path / "auth.log.1").unlink()  # compressed and removed: nothing to finish
    _append(log, b"new file\n")
    assert _read_all(FileTailer(log, OffsetStore(state), start_at_end=True)) == [b"new file"]


def test_a_rotation_with_a_backlog_larger_than_one_read_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    store = OffsetStore(None)
    tailer = FileTailer(log, store, max_read_bytes=1024)
    _append(log, b"first\n")
    assert tailer.read().lines == [b"first"]
    old = [b"old %05d" % i for i in range(2000)]  # ~18 KB: many reads of 1 KiB
    _append(log, b"\n".join(old) + b"\n")
    os.rename(log, tmp_path / "auth.log.1")
    _append(log, b"new\n")
    assert _read_all(tailer, rounds=100) == [*old, b"new"]


def test_a_file_truncated_and_rewritten_while_down_is_read_from_its_start(
    tmp_path: Path
) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"aaaa\nbbbb\n")
    _saved_run(log, state)  # position 10
    with log.open("r+b") as handle:  # copytruncate, then the writer goes on, same inode
        handle.truncate(0)
    _append(log, b"cccccccccccccc\ndd\n")
    result = FileTailer(log, OffsetStore(state), start_at_end=True).read()
    assert result.shrunk and result.lines == [b"cccccccccccccc", b"dd"]


def test_a_position_after_a_newline_resumes_there(tmp_path: Path) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"aaaa\nbbbb\n")
    _saved_run(log, state)
    _append(log, b"cc\n")
    result = FileTailer(log, OffsetStore(state), start_at_end=True).read()
    assert not result.shrunk and result.lines == [b"cc"]


def test_a_log_created_after_the_start_is_read_from_its_first_line(tmp_path: Path) -> None:
    """start_at_end skips history at the first start; a file that did not exist then (rsyslog
    creates auth.log after the agent started) is read whole, not from wherever it had grown
    to by the next poll."""
    from agent.collectors.logs.collector import LogTailCollector  # noqa: PLC0415
    from agent.collectors.parsers.decoders import WebDecoder  # noqa: PLC0415

    log = tmp_path / "access.log"
    line = ('198.18.0.5 - - [07/Dec/2026:01:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "ua"\n')
    collector = LogTailCollector("web_logs", [log], lambda p: WebDecoder(path=str(p)),
                                 OffsetStore(tmp_path / "offsets.json"), start_at_end=True)
    assert collector.poll_once() == []  # not there yet
    log.write_text(line * 3)
    assert len(collector.poll_once()) == 3


def test_a_deeply_nested_positions_file_is_refused_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "offsets.json"
    state.write_text("[" * 100_000)
    problems: list[str] = []
    assert OffsetStore(state, on_problem=problems.append).damaged
    assert problems == ["positions_damaged"]


def test_a_restart_inside_an_over_long_line_resumes_after_a_newline(tmp_path: Path) -> None:
    """A position acknowledged while an over-long line is being skipped stays at that line's
    start, so the restart neither reads mid-line nor mistakes it for a truncated file (which
    would read the whole file again)."""
    log, state = tmp_path / "auth.log", tmp_path / "offsets.json"
    _append(log, b"first\n" + b"x" * 100)  # an over-long line still being written
    store = OffsetStore(state)
    tailer = FileTailer(log, store, max_line_bytes=16)
    assert tailer.read().lines == [b"first", b"x" * 16]
    tailer.close()
    store.save()
    assert OffsetStore(state).get(str(log)) == (log.stat().st_ino, 6)
    _append(log, b"y" * 10 + b"\nnext\n")
    result = FileTailer(log, OffsetStore(state), max_line_bytes=16).read()
    assert not result.shrunk
    assert result.lines == [b"x" * 16, b"next"]  # the cut line again (a duplicate), then on
    # while running, the position moves past the line once its newline came
    tailer = FileTailer(log, OffsetStore(None), max_line_bytes=16)
    tailer.read()
    assert tailer.position() == (log.stat().st_ino, log.stat().st_size)
