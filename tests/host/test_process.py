"""Process exec collection: connector parsing, /proc enrichment, fallback, real-kernel coverage."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.host.process.collector import ProcessExecCollector
from agent.collectors.host.process.connector import (
    CN_IDX_PROC,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    ProcConnector,
    ProcEvent,
    parse_messages,
)
from agent.collectors.host.process.poll import ProcessPoller
from agent.collectors.host.process.procfs import ProcReader
from agent.errors import CollectorError
from agent.events import Event
from agent.metrics import AgentMetrics
from tests.host.connector_harness import RunningCollector, needs_connector

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"


def _msg(what: int, *data: int) -> bytes:
    body = struct.pack("=IIQ", what, 0, 123) + struct.pack(f"={len(data)}I", *data)
    cn = struct.pack("=IIIIHH", CN_IDX_PROC, 1, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_parse_messages() -> None:
    data = (_msg(PROC_EVENT_FORK, 10, 10, 11, 11) + _msg(PROC_EVENT_EXEC, 11, 11)
            + _msg(PROC_EVENT_FORK, 11, 11, 12, 11) + _msg(PROC_EVENT_EXIT, 12, 11, 0, 0)
            + _msg(PROC_EVENT_EXIT, 11, 11, 0, 0))
    assert parse_messages(data) == [
        ProcEvent("fork", 11, 10), ProcEvent("exec", 11),
        ProcEvent("fork", 11, 11, thread=True), ProcEvent("exit", 11)]
    assert parse_messages(data[:-5]) == parse_messages(data)[:-1]  # truncated tail skipped
    assert parse_messages(b"\x00" * 7) == []
    assert parse_messages(struct.pack("=IHHII", 2, 0, 0, 0, 0)) == []


def test_enrichment_from_fake_proc_tree() -> None:
    reader = ProcReader(PROC)
    collector = ProcessExecCollector(reader, clock=lambda: 1000.0, host_name="web1")
    (event,) = collector.handle([ProcEvent("fork", 4242, 4200), ProcEvent("exec", 4242)])
    f = event.fields
    assert event.logsource == ("linux", "process_creation", None)
    assert f["process.executable"] == "/tmp/.x/sh" and f["process.executable_deleted"] is True
    assert f["process.command_line"] == "sh -i" and f["process.args"] == ["sh", "-i"]
    assert f["process.io.socket"] is True and f["process.io.socket_fds"] == [0, 1]
    assert f["user.id"] == "33" and f["process.working_directory"] == "/var/www/html"
    assert f["container.id"].startswith("4f3c2a1b") and len(f["container.id"]) == 64
    assert f["process.parent.executable"] == "/usr/sbin/nginx"
    assert f["process.parent.command_line"] == "nginx: worker process"
    assert f["process.parent.parent.pid"] == 1
    assert f["process.parent.parent.executable"] == "/usr/lib/systemd/systemd"
    assert f["process.start"] == "2026-11-21T08:33:25.000000Z"  # btime + 500 ticks / 100
    assert f["host.name"] == "web1" and f["event.action"] == "exec"


def test_journald_socket_on_stdout_is_not_a_network_socket() -> None:
    collector = ProcessExecCollector(ProcReader(PROC))
    (event,) = collector.handle([ProcEvent("exec", 4343)])
    assert event.get("process.io.socket") is False
    assert event.get("vedette.process.io.local_socket_fds") == [1, 2]
    assert event.get("process.command_line") == "/bin/bash /usr/local/bin/backup.sh"


def test_exited_process_still_produces_an_event() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    collector = ProcessExecCollector(ProcReader(PROC), metrics)
    (event,) = collector.handle([ProcEvent("fork", 99999, 4200), ProcEvent("exec", 99999)])
    assert event.get("process.pid") == 99999
    assert event.get("process.parent.pid") == 4200
    assert event.get("process.parent.name") == "nginx"
    assert "process.executable" not in event.fields
    assert metrics.registry.get_sample_value(
        "vedette_process_enrichment_failures_total") == 1.0


def test_fallback_to_polling_sets_degraded(tmp_path: Path) -> None:
    def refuse() -> ProcConnector:
        raise PermissionError(1, "Operation not permitted")

    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "stat").write_text("1 (init) S 0 " + "0 " * 16 + "5 0\n")
    (proc / "1" / "status").write_text("Name:\tinit\nPPid:\t0\nUid:\t0\t0\t0\t0\n")
    metrics = AgentMetrics(CollectorRegistry())
    reader = ProcReader(proc)
    collector = ProcessExecCollector(reader, metrics, connector=refuse,
                                     poller=ProcessPoller(reader, proc), poll_interval_seconds=0.05)
    got: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(lambda evs: got.extend(evs) or 0, stop))
    thread.start()
    time.sleep(0.2)
    (proc / "77").mkdir()
    (proc / "77" / "stat").write_text("77 (evil) S 1 " + "0 " * 16 + "9 0\n")
    (proc / "77" / "status").write_text("Name:\tevil\nPPid:\t1\nUid:\t0\t0\t0\t0\n")
    deadline = time.time() + 15
    while not got and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert collector.mode == "polling"
    assert metrics.registry.get_sample_value(
        "vedette_collector_degraded", {"collector": "process"}) == 1.0
    assert [(e.get("process.pid"), e.get("process.name"), e.get("process.parent.name"))
            for e in got] == [(77, "evil", "init")]
    assert got[0].get("vedette.process.source") == "poll"


def _wait_for(run: RunningCollector, pids: set[int], timeout: float = 5.0) -> dict[int, Event]:
    found = run.matching(lambda e: e.get("process.pid") in pids, len(pids), timeout)
    return {e.get("process.pid"): e for e in found}


@needs_connector
def test_short_lived_processes_coverage() -> None:
    with RunningCollector() as run:
        assert run.collector.mode == "connector"
        pids = set()
        for _ in range(200):
            proc = subprocess.Popen(["sh", "-c", "true"])
            pids.add(proc.pid)
            proc.wait()
        found = _wait_for(run, pids)
    assert len(found) >= 198, f"only {len(found)}/200 execs seen"
    enriched = [e for e in found.values() if e.get("process.executable")]
    assert enriched, "no exec was enriched from /proc"


@needs_connector
def test_reverse_shell_like_and_tmp_exec(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    tmp_exe = Path("/tmp") / f"vedette-test-sleep-{os.getpid()}"
    tmp_exe.write_bytes(Path("/bin/sleep").read_bytes())
    tmp_exe.chmod(0o755)
    try:
        with RunningCollector() as run:
            shell = subprocess.Popen(["sh", "-c", "read line; echo got $line"],
                                     stdin=client.fileno(), stdout=client.fileno())
            from_tmp = subprocess.Popen([str(tmp_exe), "0.5"])
            found = _wait_for(run, {shell.pid, from_tmp.pid})
            server_side.sendall(b"hello\n")
            shell.wait(5)
            from_tmp.wait(5)
    finally:
        for s in (client, server_side, listener):
            s.close()
        tmp_exe.unlink(missing_ok=True)
    rs = found[shell.pid].fields
    assert rs["process.name"] in ("sh", "dash", "bash")
    assert rs["process.io.socket"] is True and rs["process.io.socket_fds"] == [0, 1]
    assert found[from_tmp.pid].get("process.executable") == str(tmp_exe)


def test_without_fallback_an_unavailable_connector_is_a_collector_error() -> None:
    def refuse() -> ProcConnector:
        raise PermissionError(1, "Operation not permitted")

    collector = ProcessExecCollector(ProcReader(PROC), connector=refuse, fallback=False)
    with pytest.raises(CollectorError, match="proc connector unavailable"):
        collector.run(lambda events: 0, threading.Event())
