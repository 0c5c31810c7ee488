"""The journalctl follower (with a fake journalctl) and the inotify record decoder."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.host.fim.inotify import IN_CREATE, IN_ISDIR, IN_MODIFY, parse_events
from agent.collectors.logs.journal import JournalCollector, journal_argv
from agent.events import Event
from agent.metrics import AgentMetrics

ENTRY = {"__REALTIME_TIMESTAMP": "1795255246584136", "_HOSTNAME": "web3",
         "SYSLOG_IDENTIFIER": "sshd", "_PID": "812", "__CURSOR": "s=abc;i=42",
         "_UID": "0", "_EXE": "/usr/sbin/sshd", "_COMM": "sshd", "_SYSTEMD_UNIT": "ssh.service",
         "MESSAGE": "Failed password for root from 198.18.0.30 port 41000 ssh2"}


def _fake_journalctl(tmp_path: Path) -> Path:
    script = tmp_path / "journalctl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\n"
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"print({json.dumps(json.dumps(ENTRY))}, flush=True)\n"
        "print('not json', flush=True)\n"
        "time.sleep(30)\n")
    script.chmod(0o755)
    return script


def test_argv_is_fixed() -> None:
    assert journal_argv("/usr/bin/journalctl", None) == [
        "/usr/bin/journalctl", "--output=json", "--follow", "--no-pager", "--lines=0",
        "SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"]
    assert "--after-cursor=s=abc;i=42" in journal_argv("j", "s=abc;i=42")


def test_follower_decodes_counts_and_keeps_the_cursor(tmp_path: Path) -> None:
    metrics = AgentMetrics(CollectorRegistry())
    cursor = tmp_path / "state" / "journal.cursor"
    collector = JournalCollector(str(_fake_journalctl(tmp_path)), cursor, metrics)
    got: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(lambda e: got.extend(e) or 0, stop))
    thread.start()
    deadline = time.monotonic() + 10
    while not (got and cursor.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert [(e.get("event.action"), e.get("source.ip")) for e in got] == [
        ("ssh_login", "198.18.0.30")]
    assert cursor.read_text() == "s=abc;i=42"
    assert json.loads((tmp_path / "argv.json").read_text())[-3] == "--lines=0"
    get = metrics.registry.get_sample_value
    assert get("vedette_input_errors_total", {"source": "journal", "reason": "bad_json"}) == 1
    assert get("vedette_logins_total", {"outcome": "failure"}) == 1
    # a restart resumes after the saved cursor
    collector2 = JournalCollector(str(_fake_journalctl(tmp_path)), cursor, metrics)
    stop2 = threading.Event()
    thread2 = threading.Thread(target=collector2.run, args=(lambda e: 0, stop2))
    thread2.start()
    deadline = time.monotonic() + 10
    argv_file = tmp_path / "argv.json"
    while time.monotonic() < deadline:
        if "--after-cursor=s=abc;i=42" in argv_file.read_text():
            break
        time.sleep(0.05)
    stop2.set()
    thread2.join(10)
    assert "--after-cursor=s=abc;i=42" in json.loads(argv_file.read_text())


def test_inotify_records() -> None:
    def record(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name) % 16) if name else b""
        return struct.pack("=iIII", wd, mask, 0, len(padded)) + padded
    data = record(1, IN_MODIFY, b"passwd") + record(2, IN_CREATE | IN_ISDIR, b".ssh") + \
        record(3, IN_MODIFY, b"")
    events = parse_events(data)
    assert [(e.wd, e.name, bool(e.mask & IN_ISDIR)) for e in events] == [
        (1, "passwd", False), (2, ".ssh", True), (3, "", False)]
    assert parse_events(data[:-1]) == events[:2]  # truncated record ignored


def test_a_cursor_journalctl_rejects_is_replaced_by_its_time(tmp_path: Path) -> None:
    """A vacuumed or foreign cursor: the restart reads the journal again from the time the
    cursor was saved (not from the end, which would skip what came after it), counted."""
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
    script.chmod(0o755)
    cursor = tmp_path / "journal.cursor"
    # a real cursor's t= is its entry's realtime in microseconds (hex)
    cursor.write_text(f"s=gone;i=1;b=ab;m=1f;t={1_795_000_000_500_000:x};x=cd")
    os.utime(cursor, (1_795_000_100, 1_795_000_100))  # saved (acknowledged) 100 s later
    metrics = AgentMetrics(CollectorRegistry())
    collector = JournalCollector(str(script), cursor, metrics)
    with pytest.raises(RuntimeError, match="status 1"):  # the daemon restarts the collector
        collector.run(lambda e: 0, threading.Event())
    assert cursor.read_text() == "@1794999999"
    assert metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": "journal_cursor"}) == 1
    assert "--since=@1794999999" in journal_argv("j", *collector._load_cursor())
    # journalctl refusing the time too: forgotten, the next start follows from the end
    with pytest.raises(RuntimeError, match="status 1"):
        collector.run(lambda e: 0, threading.Event())
    assert not cursor.exists()


@pytest.mark.parametrize("damage", [b"", b"s=abc\ni=2", b"x" * 600, b"\xff\xfe"])
def test_a_damaged_cursor_file_reads_again_from_its_time(tmp_path: Path, damage: bytes) -> None:
    cursor = tmp_path / "state" / "journal.cursor"
    cursor.parent.mkdir()
    cursor.write_bytes(damage)
    os.utime(cursor, (1_795_000_000, 1_795_000_000))
    metrics = AgentMetrics(CollectorRegistry())
    collector = JournalCollector(str(_fake_journalctl(tmp_path)), cursor, metrics)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(lambda e: 0, stop))
    thread.start()
    argv_file = tmp_path / "argv.json"
    deadline = time.monotonic() + 10
    while not argv_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    argv = json.loads(argv_file.read_text())
    # from the file's time less the acknowledgement lag, not from the end
    assert "--since=@1794999700" in argv and "--lines=0" not in argv
    assert metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": "journal_cursor"}) == 1


class _HoldingPublish:
    """A publish with the acknowledging path that holds every acknowledgement back."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.acks: list[tuple[object, object]] = []

    def __call__(self, events: object) -> int:
        raise AssertionError("replayable sources publish through acked()")

    def acked(self, events: list[Event], ack: object, commit: object,
              stop: threading.Event) -> bool:
        self.events.extend(events)
        self.acks.append((ack, commit))
        return True


def test_the_cursor_saved_is_the_acknowledged_one(tmp_path: Path) -> None:
    cursor = tmp_path / "state" / "journal.cursor"
    collector = JournalCollector(str(_fake_journalctl(tmp_path)), cursor)
    publish = _HoldingPublish()
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(publish, stop))
    thread.start()
    deadline = time.monotonic() + 10
    while not publish.events and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # an idle select: the old follower saved the read cursor here
    assert publish.events and not cursor.exists()  # read, evaluated by no one: not saved
    ack, commit = publish.acks[0]
    ack()  # type: ignore[operator]
    commit()  # type: ignore[operator]
    assert cursor.read_text() == "s=abc;i=42"
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_a_failed_cursor_write_is_raised_to_the_pipeline_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline counts a failed position write (state_write_failures{state="positions"})
    and calls the commit again next tick: the cursor must still be there to write."""
    import errno  # noqa: PLC0415

    from agent.collectors.logs import journal  # noqa: PLC0415

    cursor = tmp_path / "journal.cursor"
    collector = JournalCollector("journalctl", cursor)
    collector._acknowledge("s=abc;i=7")
    real = journal.write_durably
    failures = [OSError(errno.EIO, "Input/output error")]

    def flaky(path: Path, text: str) -> None:
        if failures:
            raise failures.pop()
        real(path, text)

    monkeypatch.setattr(journal, "write_durably", flaky)
    with pytest.raises(OSError):
        collector._save_acknowledged()
    assert not cursor.exists()
    collector._save_acknowledged()  # the next tick
    assert cursor.read_text() == "s=abc;i=7"
