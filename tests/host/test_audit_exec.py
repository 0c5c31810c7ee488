"""Exec facts from kernel audit records: record parsing, rule blobs, the collector's audit
mode, and (as root) the real audit socket — coverage of short-lived execs and a clean undo."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.host.process.audit_exec import ExecAssembler, decode_value
from agent.collectors.host.process.audit_netlink import (
    AUDIT_ADD_RULE,
    AUDIT_CWD,
    AUDIT_DEL_RULE,
    AUDIT_EOE,
    AUDIT_EXECVE,
    AUDIT_PATH,
    AUDIT_SYSCALL,
    AuditControl,
    AuditRecord,
    AuditSocket,
    exec_rules,
    parse_messages,
    rule_key,
)
from agent.collectors.host.process.collector import ProcessExecCollector
from agent.collectors.host.process.procfs import ProcReader
from agent.events import Event
from agent.metrics import AgentMetrics

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"


def _syscall(serial: int, pid: int = 900, *, ok: str = "yes", nr: int = 59,
             exe: str = '"/usr/bin/dash"', comm: str = '"sh"') -> AuditRecord:
    return AuditRecord(AUDIT_SYSCALL, (
        f"audit(1796590063.745:{serial}): arch=c000003e syscall={nr} success={ok} exit=0 "
        f"a0=55 a1=56 a2=57 a3=8 items=2 ppid=899 pid={pid} auid=1000 uid=33 gid=33 euid=0 "
        f"suid=0 fsuid=0 egid=33 sgid=33 fsgid=33 tty=pts0 ses=7 comm={comm} exe={exe} "
        f'key="vedette-1"'))


def _rec(kind: int, serial: int, text: str) -> AuditRecord:
    return AuditRecord(kind, f"audit(1796590063.745:{serial}): {text}")


def _exec(serial: int, *records: AuditRecord) -> list[AuditRecord]:
    return [_syscall(serial), *records, _rec(AUDIT_CWD, serial, 'cwd="/var/www"'),
            _rec(AUDIT_PATH, serial, 'item=0 name="/bin/sh" inode=1'),
            _rec(AUDIT_EOE, serial, "")]


def _feed(asm: ExecAssembler, records: list[AuditRecord]) -> list:  # type: ignore[type-arg]
    return [f for r in records for f in asm.add(r)]


def test_facts_from_one_exec() -> None:
    hexed = b"true; /bin/echo x".hex().upper()
    (facts,) = _feed(ExecAssembler(), _exec(
        5, _rec(AUDIT_EXECVE, 5, f'argc=3 a0="sh" a1="-c" a2={hexed}')))
    assert (facts.pid, facts.ppid, facts.uid, facts.euid, facts.gid) == (900, 899, 33, 0, 33)
    assert facts.executable == "/usr/bin/dash" and facts.comm == "sh"
    assert facts.args == ["sh", "-c", "true; /bin/echo x"] and facts.cwd == "/var/www"
    assert (facts.auid, facts.session, facts.tty) == (1000, 7, "pts0")
    assert facts.complete and facts.timestamp == pytest.approx(1796590063.745)


def test_long_argument_chunks_and_split_execve_records() -> None:
    long = "a" * 9000
    chunk1, chunk2 = long[:7000].encode().hex(), long[7000:].encode().hex()
    (facts,) = _feed(ExecAssembler(), _exec(
        6, _rec(AUDIT_EXECVE, 6, f'argc=3 a0="echo" a1_len=9000 a1[0]={chunk1}'),
        _rec(AUDIT_EXECVE, 6, f'a1[1]={chunk2} a2="end"')))
    assert facts.args == ["echo", long, "end"]


def test_argument_imitating_fields_stays_an_argument() -> None:
    # a space forces hex: an argument can never add a pair the parser would read as the kernel's
    evil = 'x" pid=1 exe="/bin/true'
    (facts,) = _feed(ExecAssembler(), [
        _syscall(7, comm="6576696C20706964"),  # comm "evil pid" (hex: it holds a space)
        _rec(AUDIT_EXECVE, 7, f'argc=2 a0="sh" a1={evil.encode().hex()}'),
        _rec(AUDIT_EOE, 7, "")])
    assert facts.pid == 900 and facts.executable == "/usr/bin/dash"
    assert facts.args == ["sh", evil] and facts.comm == "evil pid"
    assert not facts.complete or facts.cwd is None


def test_failed_and_foreign_syscalls_are_not_execs() -> None:
    asm = ExecAssembler()
    assert _feed(asm, [_syscall(8, ok="no"), _rec(AUDIT_EOE, 8, "")]) == []
    assert _feed(asm, [_syscall(9, nr=2), _rec(AUDIT_EOE, 9, "")]) == []
    assert _feed(asm, [AuditRecord(AUDIT_SYSCALL, "garbage"), _rec(AUDIT_EOE, 10, "")]) == []
    assert asm.malformed == 1


def test_lost_end_of_event_is_emitted_incomplete_when_old_or_crowded() -> None:
    asm = ExecAssembler(max_pending=2, max_age_seconds=5)
    assert _feed(asm, [_syscall(11), _rec(AUDIT_EXECVE, 11, 'argc=1 a0="x"')]) == []
    assert asm.expire(1796590063.745 + 1) == []
    (old,) = asm.expire(1796590063.745 + 6)
    assert old.args == ["x"] and not old.complete and asm.incomplete == 1
    out = _feed(asm, [_syscall(12), _syscall(13), _syscall(14)])
    assert [f.serial for f in out] == [12]  # crowded out, still reported


def test_decode_value() -> None:
    assert decode_value('"a b"') == "a b" and decode_value("(null)") is None
    assert decode_value("41424") == "41424"  # odd length: not hex
    assert decode_value("4142") == "AB"


def test_parse_messages_takes_the_whole_datagram_of_a_record() -> None:
    text = b"audit(1.0:1): argc=1 a0=\"x\""
    # the kernel's nlmsg_len counts the text only, not the 16-byte header
    data = struct.pack("=IHHII", len(text), AUDIT_EXECVE, 0, 0, 0) + text
    assert parse_messages(data) == [AuditRecord(AUDIT_EXECVE, text.decode())]
    assert parse_messages(b"\0" * 5) == []


def test_rule_blobs_carry_their_key() -> None:
    rules = exec_rules("vedette-42", "x86_64")
    assert len(rules) == 2 and all(rule_key(r) == "vedette-42" for r in rules)
    assert exec_rules("vedette-42", "sparc") == []
    assert rule_key(b"short") is None


def test_collector_audit_mode_uses_kernel_facts_for_a_process_already_gone() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    collector = ProcessExecCollector(ProcReader(PROC), metrics)
    (event,) = collector.handle_records(_exec(
        20, _rec(AUDIT_EXECVE, 20, 'argc=2 a0="sh" a1="-i"')))
    f = event.fields
    assert f["vedette.process.source"] == "audit" and f["process.pid"] == 900
    assert f["process.executable"] == "/usr/bin/dash" and f["process.args"] == ["sh", "-i"]
    assert f["process.working_directory"] == "/var/www" and f["user.id"] == "33"
    assert f["user.effective.id"] == "0" and f["user.audit.id"] == "1000"
    assert f["vedette.process.audit_session"] == "7" and f["process.parent.pid"] == 899
    assert event.timestamp == pytest.approx(1796590063.745)


# -- the real kernel ------------------------------------------------------------------------

def _audit_available() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        AuditSocket().close()
    except OSError:
        return False
    return True


needs_audit = pytest.mark.skipif(not _audit_available(), reason="needs root and kernel audit")


@needs_audit
def test_real_audit_sees_every_short_lived_exec_and_undoes_itself(tmp_path: Path) -> None:
    before = _status_and_keys()
    metrics = AgentMetrics(CollectorRegistry())
    collector = ProcessExecCollector(ProcReader(), metrics, fallback=False,
                                     kernel_facts=AuditSocket)
    seen: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(seen.extend, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while collector.mode == "starting" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert collector.mode == "audit"
        assert _status_and_keys()[1] != before[1]  # our rule is in
        marker = f"m{os.getpid()}x"
        subprocess.run(["sh", "-c", f'for i in $(seq 300); do /bin/true "{marker}$i"; done'],
                       check=True, cwd=tmp_path)
        want = {f"{marker}{i}" for i in range(1, 301)}
        deadline = time.monotonic() + 10
        got: set[str] = set()
        while time.monotonic() < deadline and got != want:
            time.sleep(0.1)
            got = {a[1] for e in list(seen)
                   if (a := e.fields.get("process.args")) and len(a) == 2 and a[1] in want
                   and e.fields.get("process.executable") == "/usr/bin/true"
                   and e.fields.get("process.working_directory") == str(tmp_path)}
        assert got == want
        assert metrics.process_exec_source.labels("audit")._value.get() == 1
    finally:
        stop.set()
        thread.join(10)
    assert _status_and_keys() == before  # enabled, daemon pid, backlog and rules restored


def _status_and_keys() -> tuple[tuple[int, int, int], set[str]]:
    control = AuditControl()
    try:
        st = control.status()
        keys = {k for r in control.rules() if (k := rule_key(r))}
    finally:
        control.close()
    return (st.enabled, st.pid, st.backlog_limit), keys


@needs_audit
def test_second_instance_listens_and_keeps_auditing_after_the_first_stops() -> None:
    before = _status_and_keys()
    first = AuditSocket()
    try:
        second = AuditSocket()  # a second agent on the host: multicast, its own rule
        try:
            assert (first.mode, second.mode) == ("daemon", "multicast")
            first.close()
            assert _status_and_keys()[0][0] == 1  # still enabled for the second one
            marker = f"m{os.getpid()}second"
            subprocess.run(["/bin/true", marker], check=True)
            deadline = time.monotonic() + 5
            seen = False
            while time.monotonic() < deadline and not seen:
                seen = any(marker in r.text or marker.encode().hex().upper() in r.text
                           for r in second.receive(0.2))
            assert seen
        finally:
            second.close()
    finally:
        first.close()
    assert _status_and_keys() == before


@needs_audit
def test_an_instance_killed_without_closing_is_undone_by_the_next(tmp_path: Path) -> None:
    before = _status_and_keys()
    code = ("import os, time\nfrom agent.collectors.host.process.audit_netlink import AuditSocket\n"
            "s = AuditSocket()\nprint(s.mode, flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"daemon"
    finally:
        child.kill()  # SIGKILL: no close(), its rule and the enabled state stay behind
        child.wait()
    assert _status_and_keys() != before
    AuditSocket().close()  # the next instance removes the dead one's rule and, being the
    assert _status_and_keys() == before  # last one out, restores the recorded state


@needs_audit
def test_audit_silenced_by_someone_else_falls_back_to_the_connector_and_back(
        tmp_path: Path) -> None:
    """``auditctl -D`` (here: this instance's own rule deleted, nothing global touched) silences
    the records without an error: within one 5 s check the execs come from the connector, and
    from audit again once the rule is back."""
    made: list[AuditSocket] = []

    def kernel() -> AuditSocket:
        made.append(AuditSocket())
        return made[-1]

    metrics = AgentMetrics(CollectorRegistry())
    collector = ProcessExecCollector(ProcReader(), metrics, fallback=False, kernel_facts=kernel)
    seen: list[Event] = []
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(seen.extend, stop))
    thread.start()
    control = AuditControl()

    def wait_mode(mode: str) -> None:
        deadline = time.monotonic() + 15
        while collector.mode != mode and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.mode == mode

    try:
        wait_mode("audit")
        for rule in exec_rules(made[0].key):
            control.request(AUDIT_DEL_RULE, rule)
        wait_mode("connector")
        assert metrics.process_exec_source.labels("connector")._value.get() == 1
        marker = f"m{os.getpid()}silenced"
        subprocess.run(["/bin/sh", "-c", "sleep 0.5", marker], check=True, cwd=tmp_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                marker in (e.fields.get("process.args") or []) for e in list(seen)):
            time.sleep(0.05)
        ev = next(e for e in seen if marker in (e.fields.get("process.args") or []))
        assert ev.fields["vedette.process.source"] == "connector"
        for rule in exec_rules(made[0].key):
            control.request(AUDIT_ADD_RULE, rule)
        wait_mode("audit")
        assert metrics.process_exec_source.labels("audit")._value.get() == 1
    finally:
        control.close()
        stop.set()
        thread.join(10)
