"""auditd log records → ``linux``/``auditd`` events with the raw keys SigmaHQ rules use.

One audit *event* is several records (``SYSCALL``, ``EXECVE``, ``CWD``, ``PATH``…,
``PROCTITLE``, ``EOE``) sharing ``msg=audit(<time>:<serial>)``. :class:`AuditJoiner` groups
records by serial (complete at ``EOE``, at once for single-record user-space messages, or when
a group has been idle for ``max_pending`` later records, or on flush), and
:func:`group_events` turns a group into **one event per record**: each keeps its own raw keys
(``type``, ``a0``…, ``exe``, ``comm``, ``key``, ``name``, ``nametype``, ``SYSCALL`` …, as
SigmaHQ's ``type: EXECVE`` + ``a0: …`` selections expect) plus ECS fields taken from the whole
group (``process.executable``, ``process.args``, ``process.command_line``, ``user.id`` …).

Decoding follows auparse (audit-userspace's ``auparse/ellist.c``), not a quote-aware regex:

* A record is split into fields **at spaces only**, each field at its first ``=``; quotes
  never delimit anything. The kernel and libaudit encode every value that could contain a
  space (as bare hex), so a value the attacker chose (a user name in ``acct``, a file name, a
  command line) is always one field, whatever quotes it contains: ``acct="x'addr='1.2.3.4'"``
  is the user name ``x'addr='1.2.3.4'``, not an address. (libaudit quotes ``acct`` with ``"``
  but does not encode ``'``; a quote-aware parser let ``'`` close ``msg='…'`` early.)
* ``msg='`` opens the user-space part, a trailing ``'`` closes it (as auparse strips them).
* A name given twice: the **first** one wins (auparse's ``auparse_find_field`` returns the
  first), except for the fields libaudit writes *after* the attacker's text in user-space
  messages (``exe``, ``hostname``, ``addr``, ``terminal``, ``res``: ``op=… acct=… exe=…
  hostname=… addr=… terminal=… res=…``) and auditd's enriched fields (upper-case names after
  the ``\\x1d`` separator, appended last): for those the **last** one wins, so text injected
  before them (an unencoded hostname) cannot override them.
* Quoted values are unquoted; string-valued keys written as bare hex (``a1=2F746D70``,
  ``proctitle=6C73002D6C``, ``acct=726F6F7420``) are hex-decoded and the result goes through
  :func:`~agent.collectors.parsers.line_clean.clean_line` like any log text (NULs in
  ``proctitle`` and ``EXECVE`` arguments become spaces first). Numeric keys (the
  ``SYSCALL`` record's ``a0``..``a3`` are raw register values) are left as they are.

Why not auparse itself: Debian's ``python3-audit`` binding is built for the system Python and
cannot be installed into the agent's virtual environment from the lock files, and it reads
whole event streams, not the single records the tailer hands over. The rules above are the
part of it that decides attribution; they are tested against hostile values (tests/host).

The "enriched" log format's translated fields (``SYSCALL=execve UID="root"``) are kept, and for
raw logs the syscall number is translated for x86_64 and aarch64 so ``SYSCALL: execve`` rules
work either way.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, NamedTuple

from agent.collectors.parsers.line_clean import clean_line
from agent.events import Event, LogSource

AUDITD = LogSource("linux", None, "auditd")

_HEADER = re.compile(r"type=(?P<type>[A-Z_0-9]+) msg=audit\((?P<sec>\d{1,12})\.(?P<frac>\d{1,9}):"
                     r"(?P<serial>\d{1,20})\):\s?(?P<body>.*)", re.DOTALL)
_NAME = re.compile(r"\(?([A-Za-z_][A-Za-z0-9_\-]*)")
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
# keys whose string values the kernel or libaudit hex-encode when they contain spaces, quotes
# or control bytes (EXECVE's a0, a1 … too)
_STRING_KEYS = frozenset({"name", "comm", "exe", "cwd", "proctitle", "key", "path", "data",
                          "cmd", "acct", "old", "new", "dev", "terminal", "ocomm", "watch",
                          "root_dir", "exe_path", "id", "new_name", "old_name"})
# written after attacker-controlled text in libaudit's user-space messages: last one wins
_LAST_WRITER = frozenset({"exe", "hostname", "addr", "terminal", "res"})
MAX_VALUE_CHARS = 4096
_ARCH = {"c000003e": "x86_64", "c00000b7": "aarch64", "40000003": "i386"}
_X86_64 = {0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 9: "mmap", 10: "mprotect",
           21: "access", 32: "dup", 33: "dup2", 41: "socket", 42: "connect", 43: "accept",
           44: "sendto", 49: "bind", 50: "listen", 56: "clone", 57: "fork", 58: "vfork",
           59: "execve", 62: "kill", 76: "truncate", 77: "ftruncate", 82: "rename",
           83: "mkdir", 84: "rmdir", 86: "link", 87: "unlink", 88: "symlink", 90: "chmod",
           91: "fchmod", 92: "chown", 94: "lchown", 101: "ptrace", 105: "setuid", 106: "setgid",
           113: "setreuid", 117: "setresuid", 133: "mknod", 157: "prctl", 161: "chroot",
           165: "mount", 166: "umount2", 175: "init_module", 176: "delete_module",
           257: "openat", 258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat",
           264: "renameat", 265: "linkat", 266: "symlinkat", 268: "fchmodat", 288: "accept4",
           310: "process_vm_readv", 311: "process_vm_writev", 313: "finit_module",
           316: "renameat2", 319: "memfd_create", 321: "bpf", 322: "execveat"}
_AARCH64 = {17: "getcwd", 33: "mknodat", 34: "mkdirat", 35: "unlinkat", 37: "linkat",
            38: "renameat", 40: "mount", 53: "fchmodat", 54: "fchownat", 56: "openat",
            57: "close", 63: "read", 64: "write", 105: "init_module", 106: "delete_module",
            117: "ptrace", 129: "kill", 146: "setuid", 198: "socket", 200: "bind", 201: "listen",
            202: "accept", 203: "connect", 220: "clone", 221: "execve", 273: "finit_module",
            279: "memfd_create", 280: "bpf", 281: "execveat"}
_SYSCALLS = {"x86_64": _X86_64, "aarch64": _AARCH64}


# User-space and standalone kernel messages are single-record events without an EOE.
_STANDALONE_PREFIXES = ("USER_", "CRED_", "ADD_", "DEL_", "SERVICE_", "DAEMON_", "ANOM_",
                        "LOGIN", "SYSTEM_", "USYS_", "ROLE_", "GRP_", "ACCT_", "CHGRP_",
                        "CHUSER_", "CONFIG_CHANGE", "AVC", "SECCOMP")


class AuditRecord(NamedTuple):
    type: str
    timestamp: float
    serial: int
    fields: dict[str, str]
    line: str = ""


def _value(key: str, raw: str, record_type: str) -> str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1]
    if (key in _STRING_KEYS or (record_type == "EXECVE" and key[:1] == "a" and key[1:].isdigit())
            ) and len(raw) >= 2 and _HEX.fullmatch(raw):
        data = bytes.fromhex(raw)
        if key == "proctitle" or record_type == "EXECVE":
            data = data.replace(b"\x00", b" ").strip(b" ")
        return clean_line(data, MAX_VALUE_CHARS).text
    return raw


def _fields(body: str, record_type: str) -> dict[str, str]:
    """The fields of a record body, split the way auparse splits them (module docstring)."""
    fields: dict[str, str] = {}
    for token in body.split(" "):
        if token.startswith("msg="):
            if token[4:5] != "'":
                continue  # msg=audit(…) repeated, or a bare msg=
            token = token[5:]
        name, sep, raw = token.partition("=")
        if not sep:
            continue
        m = _NAME.fullmatch(name)
        if m is None:
            continue
        key = m[1]
        if raw.endswith("'"):  # the end of msg='…'
            raw = raw[:-1]
        if key in fields and not (key in _LAST_WRITER or key.isupper()):
            continue
        fields[key] = _value(key, raw, record_type)
    return fields


def without_trailing_fields(record: AuditRecord) -> AuditRecord:
    """``record`` without the fields libaudit writes after attacker-controlled text (``exe``,
    ``hostname``, ``addr``, ``terminal``, ``res``): for a line cut at the length limit, whose
    real trailing fields are gone, so those left are whatever the attacker's text held (a
    hostname ``x addr=198.18.7.7`` padded past the limit would otherwise name that address)."""
    return record._replace(fields={k: v for k, v in record.fields.items()
                                   if k not in _LAST_WRITER})


def parse_record(text: str) -> AuditRecord | None:
    """One sanitised audit.log line (``\\x1d`` already turned into a space) → a record."""
    m = _HEADER.match(text)
    if m is None:
        return None
    rtype = m["type"]
    fields = _fields(m["body"], rtype)
    ts = int(m["sec"]) + int(m["frac"]) / (10 ** len(m["frac"]))
    if rtype == "SYSCALL" and "SYSCALL" not in fields:
        arch = _ARCH.get(fields.get("arch", ""), "")
        try:
            name = _SYSCALLS.get(arch, {}).get(int(fields.get("syscall", "-1")))
        except ValueError:
            name = None
        if name:
            fields["SYSCALL"] = name
        if arch and "ARCH" not in fields:
            fields["ARCH"] = arch
    return AuditRecord(rtype, ts, int(m["serial"]), fields, text)


class AuditJoiner:
    """Groups records by serial; returns complete groups in arrival order."""

    def __init__(self, max_pending: int = 64, max_records_per_event: int = 256) -> None:
        self._pending: OrderedDict[int, list[AuditRecord]] = OrderedDict()
        self._max_pending = max_pending
        self._max_records = max_records_per_event
        self._seen = 0
        self._last_seen: dict[int, int] = {}

    def feed(self, record: AuditRecord) -> list[list[AuditRecord]]:
        self._seen += 1
        done: list[list[AuditRecord]] = []
        group = self._pending.get(record.serial)
        if group is None:
            group = []
            self._pending[record.serial] = group
        if record.type != "EOE" and len(group) < self._max_records:
            group.append(record)
        self._last_seen[record.serial] = self._seen
        if record.type == "EOE" or (
                len(group) == 1 and record.type.startswith(_STANDALONE_PREFIXES)):
            self._take(record.serial, done)
        for serial in list(self._pending):
            if self._seen - self._last_seen[serial] > self._max_pending:
                self._take(serial, done)
            else:
                break
        return done

    def flush(self) -> list[list[AuditRecord]]:
        done: list[list[AuditRecord]] = []
        for serial in list(self._pending):
            self._take(serial, done)
        return done

    def _take(self, serial: int, done: list[list[AuditRecord]]) -> None:
        group = self._pending.pop(serial, [])
        self._last_seen.pop(serial, None)
        if group:
            done.append(group)


def group_context(records: list[AuditRecord]) -> dict[str, Any]:
    """ECS fields that describe the whole audit event."""
    ctx: dict[str, Any] = {"event.dataset": "auditd.log", "auditd.serial": records[0].serial}
    for rec in records:
        f = rec.fields
        if rec.type == "SYSCALL":
            for key, ecs in (("exe", "process.executable"), ("comm", "process.name"),
                             ("uid", "user.id"), ("euid", "user.effective.id"),
                             ("auid", "user.audit.id")):
                if f.get(key) not in (None, "", "(null)"):
                    ctx[ecs] = f[key]
            for key, ecs in (("pid", "process.pid"), ("ppid", "process.parent.pid")):
                if f.get(key, "").isascii() and f.get(key, "").isdigit():
                    ctx[ecs] = int(f[key])
            if f.get("success") in ("yes", "no"):
                ctx["event.outcome"] = "success" if f["success"] == "yes" else "failure"
            if "UID" in f:
                ctx["user.name"] = f["UID"]
        elif rec.type == "EXECVE":
            args = [f[f"a{i}"] for i in range(len(f)) if f"a{i}" in f]
            if args:
                ctx["process.args"] = args
                ctx["process.command_line"] = " ".join(args)
        elif rec.type == "CWD" and "cwd" in f:
            ctx["process.working_directory"] = f["cwd"]
        elif rec.type == "PATH" and "name" in f and "file.path" not in ctx:
            ctx["file.path"] = f["name"]
        elif rec.type == "PROCTITLE" and "proctitle" in f and "process.command_line" not in ctx:
            ctx["process.title"] = f["proctitle"]
        elif rec.type.startswith(("USER_", "CRED_", "ADD_", "DEL_")):
            if f.get("acct"):
                ctx["user.name"] = f["acct"]
            if f.get("res") in ("success", "failed"):
                ctx["event.outcome"] = "success" if f["res"] == "success" else "failure"
            if f.get("addr") not in (None, "", "?"):
                ctx["source.address"] = f["addr"]
    return ctx


def group_events(records: list[AuditRecord]) -> list[Event]:
    """One event per record, each with its raw keys plus the group's ECS context."""
    if not records:
        return []
    ctx = group_context(records)
    out = []
    for rec in records:
        fields: dict[str, Any] = dict(ctx)
        fields.update(rec.fields)
        fields["type"] = rec.type
        fields["event.action"] = rec.type.lower()
        if rec.line:
            fields["message"] = rec.line
        out.append(Event(rec.timestamp, AUDITD, fields))
    return out
