"""Exec facts assembled from the kernel's audit records (pure: records in, facts out).

One successful ``execve`` produces, under one serial number, a ``SYSCALL`` record (pid, ppid,
uid/euid/gid, auid, session, tty, comm, the executable the kernel loaded), one or more
``EXECVE`` records (argc and every argument; long arguments in ``aN[i]`` chunks, hex when they
hold spaces, quotes or control bytes), a ``CWD`` record and ``PATH`` records, then ``EOE``.
:class:`ExecAssembler` keeps the records of each serial until ``EOE`` (or until it is too old
or too many are pending: then what arrived is emitted, counted as ``incomplete``) and returns
:class:`ExecFacts`. Every value is attacker-controlled text (an argument can imitate
``key=value``): values are taken only at the positions the kernel writes them, arguments are
decoded from their hex/quoted form, and every size is bounded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from agent.collectors.host.process.audit_netlink import (
    AUDIT_CWD,
    AUDIT_EOE,
    AUDIT_EXECVE,
    AUDIT_SYSCALL,
    AuditRecord,
)

MAX_ARGS = 1024
MAX_ARGS_BYTES = 64 << 10
MAX_PENDING = 4096
EXEC_SYSCALLS = {0xC000003E: (59, 322), 0x40000003: (11, 358),
                 0xC00000B7: (221, 281), 0x40000028: (11, 387)}

_HEAD = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s?")
# key=value pairs as the kernel writes them: "quoted", (null), or a bare token
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)=("[^"]*"|\S*)')
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


@dataclass(slots=True)
class ExecFacts:
    serial: int
    timestamp: float
    pid: int = 0
    ppid: int = 0
    uid: int | None = None
    euid: int | None = None
    gid: int | None = None
    auid: int | None = None
    session: int | None = None
    tty: str | None = None
    comm: str | None = None
    executable: str | None = None
    args: list[str] | None = None
    cwd: str | None = None
    complete: bool = False
    _argv: dict[int, str] = field(default_factory=dict)
    _chunks: dict[int, dict[int, str]] = field(default_factory=dict)
    _argc: int = 0
    _bytes: int = 0
    _is_exec: bool = False


def decode_value(raw: str) -> str | None:
    """An audit string value: ``"text"``, hex-encoded bytes, or ``(null)``."""
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if raw in ("(null)", "?", ""):
        return None
    if _HEX.match(raw):
        return bytes.fromhex(raw).decode("utf-8", "replace")
    return raw


def _int(raw: str, base: int = 10) -> int | None:
    try:
        return int(raw, base)
    except ValueError:
        return None


def _id(raw: str) -> int | None:
    value = _int(raw)
    return None if value is None or value == 4294967295 else value


class ExecAssembler:
    """Records in, completed exec facts out (see the module docstring)."""

    def __init__(self, max_pending: int = MAX_PENDING, max_age_seconds: float = 5.0) -> None:
        self._pending: OrderedDict[int, ExecFacts] = OrderedDict()
        self._max = max_pending
        self._max_age = max_age_seconds
        self.incomplete = 0
        self.malformed = 0

    def add(self, record: AuditRecord) -> list[ExecFacts]:
        out: list[ExecFacts] = []
        if record.type not in (AUDIT_SYSCALL, AUDIT_EXECVE, AUDIT_CWD, AUDIT_EOE):
            return out
        m = _HEAD.match(record.text)
        if m is None:
            self.malformed += 1
            return out
        serial = int(m[3])
        body = record.text[m.end():]
        facts = self._pending.get(serial)
        if facts is None:
            if record.type == AUDIT_EOE:
                return out
            facts = ExecFacts(serial, int(m[1]) + int(m[2]) / 1000.0)
            self._pending[serial] = facts
            while len(self._pending) > self._max:
                _, old = self._pending.popitem(last=False)
                out.extend(self._finish(old, complete=False))
        if record.type == AUDIT_SYSCALL:
            _syscall(facts, body)
        elif record.type == AUDIT_EXECVE:
            _execve(facts, body)
        elif record.type == AUDIT_CWD:
            for key, raw in _PAIR.findall(body):
                if key == "cwd":
                    facts.cwd = decode_value(raw)
                    break
        else:  # EOE
            del self._pending[serial]
            out.extend(self._finish(facts, complete=True))
        return out

    def expire(self, now: float) -> list[ExecFacts]:
        """Emit what is pending for longer than the maximum age (an ``EOE`` that was lost)."""
        out: list[ExecFacts] = []
        while self._pending:
            serial, facts = next(iter(self._pending.items()))
            if now - facts.timestamp < self._max_age:
                break
            del self._pending[serial]
            out.extend(self._finish(facts, complete=False))
        return out

    def _finish(self, facts: ExecFacts, *, complete: bool) -> list[ExecFacts]:
        if not facts._is_exec or not facts.pid:
            return []
        if facts._argv or facts._chunks:
            for index, parts in facts._chunks.items():
                facts._argv[index] = "".join(parts[i] for i in sorted(parts))
            count = max(facts._argc, max(facts._argv) + 1 if facts._argv else 0)
            facts.args = [facts._argv.get(i, "") for i in range(min(count, MAX_ARGS))]
        facts.complete = complete and facts.args is not None and facts.executable is not None
        if not facts.complete:
            self.incomplete += 1
        facts._argv, facts._chunks = {}, {}
        return [facts]


def _syscall(facts: ExecFacts, body: str) -> None:
    values = dict(_PAIR.findall(body))
    arch = _int(values.get("arch", ""), 16)
    nr = _int(values.get("syscall", ""))
    if arch not in EXEC_SYSCALLS or nr not in EXEC_SYSCALLS[arch] \
            or values.get("success") != "yes":
        return
    facts._is_exec = True
    facts.pid = _int(values.get("pid", "")) or 0
    facts.ppid = _int(values.get("ppid", "")) or 0
    facts.uid = _id(values.get("uid", ""))
    facts.euid = _id(values.get("euid", ""))
    facts.gid = _id(values.get("gid", ""))
    facts.auid = _id(values.get("auid", ""))
    facts.session = _id(values.get("ses", ""))
    tty = values.get("tty")
    facts.tty = None if tty in (None, "(none)") else tty
    facts.comm = decode_value(values.get("comm", ""))
    facts.executable = decode_value(values.get("exe", ""))


def _execve(facts: ExecFacts, body: str) -> None:
    # pairs come in the kernel's order: argc, then aN / aN_len / aN[i]; the text of an
    # argument is always hex or quoted, so it never yields a pair of its own
    for key, raw in _PAIR.findall(body):
        if key == "argc":
            facts._argc = min(_int(raw) or 0, MAX_ARGS)
            continue
        if not key.startswith("a") or key.endswith("_len"):
            continue
        index_text, _, chunk = key[1:].partition("[")
        index = _int(index_text)
        if index is None or index >= MAX_ARGS or facts._bytes > MAX_ARGS_BYTES:
            continue
        value = decode_value(raw) or ""
        facts._bytes += len(value)
        if chunk:
            part = _int(chunk.rstrip("]"))
            if part is not None:
                facts._chunks.setdefault(index, {})[part] = value
        else:
            facts._argv[index] = value
