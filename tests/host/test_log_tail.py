"""Log tailing collectors: auth lines to events, rotation, restarts, tampering, metrics."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.collectors.logs.collector import LogTailCollector
from agent.collectors.logs.tailer import OffsetStore
from agent.collectors.parsers.decoders import AuditDecoder, AuthDecoder, LineDecoder, WebDecoder
from agent.collectors.parsers.syslog import SyslogClock
from agent.events import Event
from agent.metrics import AgentMetrics

FAIL = ("2026-11-21T10:00:{:02d}Z web1 sshd[9]: Failed password for root from 198.18.0.9 "
        "port 5 ssh2\n")
OK = "2026-11-21T10:01:00Z web1 sshd[9]: Accepted password for bob from 198.18.0.9 port 6 ssh2\n"


def _auth(metrics: AgentMetrics | None = None):
    def decoder(path: Path) -> LineDecoder:
        problem = (lambda s, r: metrics.input_errors.labels(s, r).inc()) if metrics else None
        return AuthDecoder(SyslogClock(), path=str(path), on_problem=problem or (lambda s, r: None))
    return decoder


def _collector(log: Path, state: Path, metrics: AgentMetrics | None = None,
               now: list[float] | None = None) -> LogTailCollector:
    clock = (lambda: now[0]) if now is not None else time.time
    return LogTailCollector("auth_logs", [log], _auth(metrics), OffsetStore(state), metrics,
                            start_at_end=False, watch_integrity=True, deleted_grace_seconds=5,
                            clock=clock)


def test_lines_become_events_and_metrics(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(FAIL.format(1) + "garbage\n" + OK + "2026-11-21T10:02:00Z web1 sshd[9]: par")
    metrics = AgentMetrics(CollectorRegistry())
    collector = _collector(log, tmp_path / "off.json", metrics)
    events = collector.poll_once()
    assert [(e.get("event.action"), e.get("event.outcome")) for e in events] == [
        ("ssh_login", "failure"), ("ssh_login", "success")]
    assert events[0].get("log.file.path") == str(log)
    get = metrics.registry.get_sample_value
    assert get("vedette_log_lines_total", {"source": "auth_log"}) == 2 + 1
    assert get("vedette_logins_total", {"outcome": "failure"}) == 1
    assert get("vedette_logins_total", {"outcome": "success"}) == 1
    assert get("vedette_input_errors_total", {"source": "auth_log", "reason": "malformed"}) == 1
    with log.open("a") as fh:  # the partial last line completes
        fh.write("tial message\n")
    (late,) = collector.poll_once()
    assert late.get("message").endswith("partial message")


def _run_once(collector: LogTailCollector) -> list[Event]:
    """One poll through ``run`` with a plain publish function (acknowledged at once)."""
    got: list[Event] = []
    stop = threading.Event()

    def publish(events: Iterable[Event]) -> int:
        got.extend(events)
        return len(got)

    def idle() -> None:
        stop.set()

    collector._on_idle = idle
    collector.run(publish, stop)
    return got


def test_restart_resumes_and_rotation_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    state = tmp_path / "off.json"
    log.write_text(FAIL.format(1))
    first = _collector(log, state)
    assert len(first.poll_once()) == 1  # read, never acknowledged: not remembered
    assert len(_collector(log, state).poll_once()) == 1
    assert _run_once(first) == []  # its position (after line 1) acknowledged and saved
    assert _run_once(_collector(log, state)) == []
    with log.open("a") as fh:
        fh.write(FAIL.format(2))
    second = _collector(log, state)
    assert [e.get("message")[17:19] for e in second.poll_once()] == ["02"]
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text(FAIL.format(3))
    events = second.poll_once()
    assert [e.get("message")[17:19] for e in events] == ["03"]
    assert all(e.logsource.category != "log_integrity" for e in events)


def test_truncation_and_deletion_are_reported(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(FAIL.format(1) * 5)
    now = [1000.0]
    collector = _collector(log, tmp_path / "off.json", now=now)
    collector.poll_once()
    log.write_text("")  # "> /var/log/auth.log"
    (event,) = collector.poll_once()
    assert event.logsource == ("vedette", "log_integrity", None)
    assert event.get("event.action") == "truncated"
    assert event.get("vedette.log.previous_size") == len(FAIL.format(1)) * 5
    log.unlink()
    assert collector.poll_once() == []  # within the grace period (rotation recreates)
    now[0] += 6
    (deleted,) = collector.poll_once()
    assert deleted.get("event.action") == "deleted" and deleted.get("file.path") == str(log)
    assert collector.poll_once() == []  # reported once


def test_copytruncate_rotation_is_not_tampering(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(FAIL.format(1) * 3)
    collector = _collector(log, tmp_path / "off.json", now=[time.time()])
    collector.poll_once()
    (tmp_path / "auth.log.1").write_text(log.read_text())  # logrotate copytruncate
    log.write_text("")
    (event,) = collector.poll_once()
    assert event.get("event.action") == "rotated"


def test_web_and_audit_tails_and_streaming_run(tmp_path: Path) -> None:
    web = tmp_path / "access.log"
    web.write_text("")
    collector = LogTailCollector(
        "web_logs", [web], lambda p: WebDecoder(path=str(p)), OffsetStore(None),
        poll_seconds=0.02, start_at_end=True)
    got: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(lambda e: got.extend(e) or 0, stop))
    thread.start()
    time.sleep(0.1)
    with web.open("a") as fh:
        fh.write('198.18.0.7 - - [21/Nov/2026:10:00:46 +0000] "GET /x HTTP/1.1" 404 1 "-" "-"\n')
    deadline = time.time() + 2
    while not got and time.time() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert [e.get("http.response.status_code") for e in got] == [404]
    audit = tmp_path / "audit.log"
    audit.write_text('type=SYSCALL msg=audit(1.0:7): arch=c000003e syscall=59 exe="/bin/x"\n')
    tail = LogTailCollector("auditd", [audit], lambda p: AuditDecoder(), OffsetStore(None),
                            start_at_end=False)
    first = tail.poll_once()  # a lone SYSCALL waits for more records ...
    second = tail.poll_once()  # ... and is released when the file is idle
    assert [e.get("SYSCALL") for e in first + second] == ["execve"]
