"""The throughput shortcuts give exactly what the line-by-line paths give, on any input."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.host.process import procfs as process_info
from agent.collectors.host.process.connector import (
    PROC_CN_MCAST_LISTEN,
    WANTED_EVENTS,
    can_filter,
    control_message,
)
from agent.collectors.host.process.procfs import ProcReader, _read_bytes
from agent.collectors.logs.collector import LogTailCollector
from agent.collectors.logs.tailer import FileTailer, OffsetStore
from agent.collectors.parsers.auth import _CACHE_MAX, _CACHES, auth_event
from agent.collectors.parsers.auth_context import AuthContext
from agent.collectors.parsers.decoders import AuthDecoder, WebDecoder
from agent.collectors.parsers.line_clean import clean_line, clean_lines
from agent.collectors.parsers.syslog import SyslogClock

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
REF = time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1))

_AUTH_LINES = [
    b"Nov 21 10:00:46 web1 sshd[812]: Failed password for root from 198.18.0.7 port 22 ssh2",
    b"2026-11-21T10:00:47.5+00:00 web1 sshd[812]: Accepted password for bob from 198.18.0.7 "
    b"port 2222 ssh2",
    b"Nov 21 10:00:48 web1 CRON[9]: pam_unix(cron:session): session closed for user root",
    b"Nov 21 10:00:49 web1 sudo:    bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; "
    b"COMMAND=/usr/bin/id",
    b"Nov 21 10:00:50 web1 su: (to root) bob on pts/0",
    b"Feb 30 10:00:50 web1 sshd[1]: impossible date",
    b"",
    b"   ",
    b"not a syslog line",
    b"Nov 21 10:00:51 web1 sshd[1]: Invalid user \x1b[31mx\x00 from 198.18.0.9 port 1",
    b"Nov 21 10:00:52 web1 sshd[1]: Invalid user \xff\xfe from 198.18.0.9 port 1\r",
]


def _dicts(events: list) -> list[dict]:
    return [e.to_dict() for e in events]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_AUTH_LINES), st.binary(max_size=120)), max_size=12))
def test_batch_decoding_equals_line_by_line(lines: list[bytes]) -> None:
    seen_one: list[tuple[str, str]] = []
    seen_batch: list[tuple[str, str]] = []
    one = AuthDecoder(SyslogClock(REF), context=AuthContext(),
                      on_problem=lambda s, r: seen_one.append((s, r)))
    batch = AuthDecoder(SyslogClock(REF), context=AuthContext(),
                        on_problem=lambda s, r: seen_batch.append((s, r)))
    expected = [e for raw in lines for e in one.feed(raw)]
    assert _dicts(batch.feed_lines(lines)) == _dicts(expected)
    assert sorted(seen_batch) == sorted(seen_one)
    web_one, web_batch = WebDecoder(), WebDecoder()
    assert _dicts(web_batch.feed_lines(lines)) == _dicts(
        [e for raw in lines for e in web_one.feed(raw)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_clean_lines_is_clean_line_or_declines(lines: list[bytes]) -> None:
    texts = clean_lines(lines)
    if texts is not None:
        assert texts == [clean_line(raw).text for raw in lines]
        assert all(not clean_line(raw).problems for raw in lines)
    else:
        assert any(clean_line(raw).problems or raw.endswith(b"\r") or b"\n" in raw
                   for raw in lines)


def test_clean_lines_declines_long_and_multi_line_input() -> None:
    assert clean_lines([b"a" * 20], max_chars=10) is None
    assert clean_lines([b"a\nb"]) is None
    assert clean_lines([]) == []


def test_cached_classification_is_never_shared_or_unbounded() -> None:
    line = "Nov 21 10:00:48 web1 CRON[9]: pam_unix(cron:session): session opened for user root"
    first = auth_event(line, SyslogClock(REF))
    assert first is not None and first.get("event.action") == "session_opened"
    first.fields["event.action"] = "changed by a consumer"
    first.fields["user.name"] = "mallory"
    again = auth_event(line, SyslogClock(REF))
    assert again is not None
    assert again.get("event.action") == "session_opened" and again.get("user.name") == "root"
    assert again.fields is not first.fields
    for i in range(_CACHE_MAX + 10):
        auth_event(f"Nov 21 10:00:48 web1 CRON[9]: unknown message {i}", SyslogClock(REF))
    assert all(len(cache) <= _CACHE_MAX for cache in _CACHES.values())
    # messages naming a source carry a port and never repeat: they are not kept
    auth_event("Nov 21 10:00:46 web1 sshd[812]: Failed password for root from 198.18.0.7 "
               "port 22 ssh2", SyslogClock(REF))
    assert not any("198.18.0.7" in message for message in _CACHES["sshd"])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 60), st.sampled_from([REF, time.mktime((2027, 1, 1, 0, 30, 0, 0, 0, -1)),
                                            time.mktime((2028, 2, 29, 12, 0, 0, 0, 0, -1))]))
def test_cached_stamps_resolve_like_resolve(month: int, day: int, hour: int, minute: int,
                                            second: int, reference: float) -> None:
    names = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    stamp = f"{names[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d}"
    clock = SyslogClock(reference)
    assert clock.resolve_stamp(stamp) == clock.resolve(month, day, hour, minute, second)
    assert clock.resolve_stamp(stamp) == clock.resolve(month, day, hour, minute, second)


def test_tailer_batch_cuts_only_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\n" + b"x" * 50 + b"\ntwo\n" + b"y" * 60)
    tailer = FileTailer(path, OffsetStore(None), max_line_bytes=20)
    result = tailer.read()
    assert result.lines == [b"one", b"x" * 20, b"two", b"y" * 20]  # the partial is cut too
    assert result.truncated_lines == 2
    with path.open("ab") as fh:
        fh.write(b"yyyy\nthree\n")
    assert tailer.read().lines == [b"three"]  # the rest of the cut line is skipped


def test_proc_event_filter_only_on_kernels_that_have_it() -> None:
    assert can_filter("6.6.0") and can_filter("6.18.44-fc-v669") and can_filter("7.0")
    assert not can_filter("6.5.13") and not can_filter("5.15.0-91-generic")
    assert not can_filter("garbage")
    legacy = control_message(PROC_CN_MCAST_LISTEN, 7)
    filtered = control_message(PROC_CN_MCAST_LISTEN, 7, WANTED_EVENTS)
    assert len(filtered) == len(legacy) + 4
    assert struct.unpack_from("=II", filtered, len(filtered) - 8) == (
        PROC_CN_MCAST_LISTEN, WANTED_EVENTS)
    assert struct.unpack_from("=I", legacy, len(legacy) - 4) == (PROC_CN_MCAST_LISTEN,)


def test_ancestor_reads_stop_after_what_describes_them() -> None:
    reader = ProcReader(PROC)
    full = reader.read(4242)
    light = reader.read(4242, full=False)
    assert (light.executable, light.args, light.comm, light.uid, light.ppid) == (
        full.executable, full.args, full.comm, full.uid, full.ppid)
    assert full.cwd and full.container_id and full.socket_fds
    assert light.cwd is None and light.container_id is None and light.socket_fds == ()


def test_read_bytes_reads_past_short_reads_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "table"
    path.write_bytes(b"z" * 100_000)
    assert _read_bytes(str(path), 70_000) == b"z" * 70_000
    assert _read_bytes(str(path), 1 << 20) == b"z" * 100_000
    assert _read_bytes(str(tmp_path / "missing"), 10) is None


def test_idle_polls_skip_unchanged_files_but_drain_backlogs(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    line = ("2026-11-21T10:00:{:02d}Z web1 sshd[9]: Failed password for root from 198.18.0.9 "
            "port 5 ssh2\n")
    log.write_text("".join(line.format(i % 60) for i in range(300)))  # ~27 KB, 3 reads of 10 KB
    tail = LogTailCollector("auth_logs", [log], lambda p: AuthDecoder(SyslogClock(REF)),
                            OffsetStore(None), start_at_end=False, max_read_bytes=10_000)
    counts = [len(tail.poll_once()) for _ in range(5)]
    assert sum(counts) == 300 and counts[-1] == 0 and counts[0] < 300
    with log.open("a") as fh:
        fh.write(line.format(1)[:30])  # a partial line: nothing yet
    assert tail.poll_once() == []
    with log.open("a") as fh:
        fh.write(line.format(1)[30:])
    assert len(tail.poll_once()) == 1
    log.rename(tmp_path / "auth.log.1")  # rename rotation to a file of the same size
    log.write_text(line.format(3))
    (event,) = tail.poll_once()
    assert event.get("source.ip") == "198.18.0.9"


def test_stdio_socket_kind_comes_from_the_kernel_protocol_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tables(base: str, wanted: set[str]) -> set[str]:
        raise AssertionError("the net tables were read")

    monkeypatch.setattr(process_info, "_inet_inodes", no_tables)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    tcp = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    local, remote = socket.socketpair()
    child = subprocess.Popen(["sleep", "5"], stdin=tcp, stdout=local, stderr=subprocess.DEVNULL)
    try:
        info = ProcReader().read(child.pid)
        assert info.socket_fds == (0,) and info.unix_socket_fds == (1,)
    finally:
        child.kill()
        child.wait()
        for sock in (server, tcp, peer, local, remote):
            sock.close()
