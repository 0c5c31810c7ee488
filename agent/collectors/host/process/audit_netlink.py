"""The kernel audit subsystem over netlink (``NETLINK_AUDIT``): status, rules, records.

Exec facts taken from the kernel's own audit records (``SYSCALL`` + ``EXECVE`` + ``CWD`` +
``PATH``, emitted at the exit of ``execve``) cannot lose the race a later ``/proc`` read loses
against a process that lives a millisecond. :class:`AuditSocket` follows the Auditbeat model:

* no audit daemon registered (``audit_status.pid == 0``): become it — register our port as
  the receiver, enable auditing and raise the backlog limit (the last instance to close
  unregisters and puts ``enabled`` and ``backlog_limit`` back as they were);
* a daemon (auditd) already registered: join the read-only multicast group
  ``AUDIT_NLGRP_READLOG`` (``CAP_AUDIT_READ``) and receive a copy of every record.

Either way one syscall-exit rule per ABI for ``execve``/``execveat`` is added with a key of
this agent instance (``vedette-<pid>-<n>-<enabled>-<backlog>``: the audit state before the first
instance, so whichever instance stops last — or the next to start after one was killed —
can put it back), so two instances never delete each other's rule, and
removed again on close; a rule left by an instance that died without closing (its pid is gone)
is removed at start. While another instance's rule remains, closing leaves auditing enabled
for it (that instance listens on the multicast group, which the kernel serves with or without
a registered receiver). No library: Debian's ``python3-audit`` bindings are not installable into
a venv and auparse reads files, not the socket; the protocol is a few fixed structs
(``<linux/audit.h>``).
"""

from __future__ import annotations

import errno
import itertools
import os
import platform
import select
import socket
import struct
from typing import NamedTuple

NETLINK_AUDIT = 9
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
AUDIT_NLGRP_READLOG = 1

AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_LIST_RULES = 1013
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4

AUDIT_SYSCALL = 1300
AUDIT_PATH = 1302
AUDIT_CWD = 1307
AUDIT_EXECVE = 1309
AUDIT_EOE = 1320

AUDIT_STATUS_ENABLED, AUDIT_STATUS_PID, AUDIT_STATUS_BACKLOG_LIMIT = 0x1, 0x4, 0x10
AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_ARCH = 11
AUDIT_FILTERKEY = 210
AUDIT_EQUAL = 0x40000000
AUDIT_BITMASK_SIZE = 64
AUDIT_MAX_FIELDS = 64
KEY_PREFIX = "vedette-"
BACKLOG_LIMIT = 8192
_INSTANCES = itertools.count(1)

# (audit arch, execve, execveat) per ABI the kernel can run on this machine
_ABIS: dict[str, list[tuple[int, int, int]]] = {
    "x86_64": [(0xC000003E, 59, 322), (0x40000003, 11, 358)],
    "aarch64": [(0xC00000B7, 221, 281), (0x40000028, 11, 387)],
}

_NLMSG = struct.Struct("=IHHII")
MAX_RECORD = 1 << 16  # receive buffer of one datagram (a record is at most ~9 KB)
# what exec facts are assembled from (agent.collectors.host.process.audit_exec)
EXEC_RECORD_TYPES = frozenset({AUDIT_SYSCALL, AUDIT_EXECVE, AUDIT_CWD, AUDIT_EOE})
_STATUS = struct.Struct("=10I")  # mask … backlog_wait_time (the kernel accepts a prefix)
_RULE_HEAD = struct.Struct(f"=3I{AUDIT_BITMASK_SIZE}I")
_RULE_ARRAYS = struct.Struct(f"={AUDIT_MAX_FIELDS * 3}I")
_U32 = struct.Struct("=I")


class AuditStatus(NamedTuple):
    enabled: int
    pid: int
    backlog_limit: int
    lost: int
    backlog: int


class AuditRecord(NamedTuple):
    type: int
    text: str


def exec_rules(key: str, machine: str | None = None) -> list[bytes]:
    """``audit_rule_data`` blobs: always audit execve/execveat at syscall exit, per ABI."""
    machine = machine or platform.machine()
    out = []
    for arch, *calls in _ABIS.get(machine, []):
        out.append(rule_data(arch, calls, key))
    return out


def rule_data(arch: int, syscalls: list[int], key: str) -> bytes:
    mask = [0] * AUDIT_BITMASK_SIZE
    for nr in syscalls:
        mask[nr // 32] |= 1 << (nr % 32)
    fields = [0] * AUDIT_MAX_FIELDS
    values = [0] * AUDIT_MAX_FIELDS
    flags = [0] * AUDIT_MAX_FIELDS
    raw_key = key.encode()
    fields[0], values[0], flags[0] = AUDIT_ARCH, arch, AUDIT_EQUAL
    fields[1], values[1], flags[1] = AUDIT_FILTERKEY, len(raw_key), AUDIT_EQUAL
    return (_RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 2, *mask)
            + _RULE_ARRAYS.pack(*fields, *values, *flags) + _U32.pack(len(raw_key)) + raw_key)


def rule_key(data: bytes) -> str | None:
    """The filter key of an ``audit_rule_data`` blob (``None`` without one)."""
    head = _RULE_HEAD.size
    if len(data) < head + _RULE_ARRAYS.size + 4:
        return None
    count = _U32.unpack_from(data, 8)[0]
    arrays = _RULE_ARRAYS.unpack_from(data, head)
    fields = arrays[:AUDIT_MAX_FIELDS]
    values = arrays[AUDIT_MAX_FIELDS:2 * AUDIT_MAX_FIELDS]
    buf = data[head + _RULE_ARRAYS.size + 4:]
    at = 0
    for i in range(min(count, AUDIT_MAX_FIELDS)):
        if fields[i] == AUDIT_FILTERKEY:
            return buf[at:at + values[i]].decode("utf-8", "replace")
        if fields[i] in _STRING_FIELDS:
            at += values[i]
    return None


# rule fields whose value is a length into ``buf`` (<linux/audit.h>)
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 18, 19, 20, 21, 105, 106, 108, 110, 113, 114,
                            115, 116, 117, 210, 211})


def parse_messages(data: bytes) -> list[AuditRecord]:
    """Every netlink message in one datagram as (type, payload text); truncated ones end it.

    The kernel sends each audit record in a datagram of its own and sets ``nlmsg_len`` to the
    length of the text alone, without the header (go-libaudit works around the same): a
    record's text is therefore the rest of the datagram."""
    out: list[AuditRecord] = []
    if len(data) >= _NLMSG.size:
        kind = _NLMSG.unpack_from(data, 0)[1]
        if kind >= 1100:
            text = data[_NLMSG.size:].rstrip(b"\0")
            return [AuditRecord(kind, text.decode("utf-8", "replace"))]
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            break
        payload = data[offset + _NLMSG.size:offset + length]
        out.append(AuditRecord(kind, payload.rstrip(b"\0").decode("utf-8", "replace")))
        offset += (length + 3) & ~3
    return out


class AuditControl:
    """A control socket: status, rules (requests answered by the kernel)."""

    def __init__(self) -> None:
        self._seq = 0
        self._ctl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        try:
            self._ctl.bind((0, 0))
        except OSError:
            self._ctl.close()
            raise

    def status(self) -> AuditStatus:
        for raw in self.request(AUDIT_GET, b"", reply=AUDIT_GET):
            values = struct.unpack_from("=8I", raw.ljust(32, b"\0"))
            return AuditStatus(values[1], values[3], values[5], values[6], values[7])
        raise OSError(errno.EPROTO, "no audit status reply")

    def rules(self) -> list[bytes]:
        return self.request(AUDIT_LIST_RULES, b"", reply=AUDIT_LIST_RULES)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def close(self) -> None:
        self._ctl.close()

    def request(self, kind: int, payload: bytes, *, reply: int = 0) -> list[bytes]:
        """Send a request and collect the replies of type ``reply`` up to the ack/done."""
        seq = self.next_seq()
        flags = NLM_F_REQUEST | (NLM_F_ACK if not reply else 0)
        self._ctl.send(_NLMSG.pack(_NLMSG.size + len(payload), kind, flags, seq, 0) + payload)
        out: list[bytes] = []
        for _ in range(10_000):
            ready, _, _ = select.select([self._ctl], [], [], 2.0)
            if not ready:
                raise OSError(errno.ETIMEDOUT, "audit netlink request timed out")
            data = self._ctl.recv(1 << 16)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    break
                body = data[offset + _NLMSG.size:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if code:
                        raise OSError(code, f"audit request {kind}: {os.strerror(code)}")
                    if not reply:
                        return out
                elif mtype == NLMSG_DONE:
                    return out
                elif mtype == reply:
                    out.append(body)
                    if reply == AUDIT_GET:
                        return out
        raise OSError(errno.EPROTO, "audit netlink: no end of reply")



class AuditSocket:
    """An audit netlink socket receiving exec records. Raises ``OSError`` when the kernel
    refuses (no ``CAP_AUDIT_CONTROL``, no audit support, in a container)."""

    def __init__(self, rcvbuf_bytes: int = 16 << 20, *, become_daemon: bool = True) -> None:
        self.lost = 0
        self.mode = "multicast"
        self._rules: list[bytes] = []
        self._sock: socket.socket | None = None
        self._ctl = AuditControl()
        self._original: tuple[int, int] | None = None  # (enabled, backlog) before any agent
        try:
            before = self._ctl.status()
            # the state before the first agent instance, carried in every instance's rule key
            # (also a dead one's: an agent killed with SIGKILL is undone by the next start)
            inherited = self._scan_rules()
            self._original = inherited or (before.enabled, before.backlog_limit)
            self.key = (f"{KEY_PREFIX}{os.getpid()}-{next(_INSTANCES)}"
                        f"-{self._original[0]}-{self._original[1]}")
            self._sock = self._open_receiver(before, rcvbuf_bytes, become_daemon)
            for rule in exec_rules(self.key):
                try:
                    self._ctl.request(AUDIT_ADD_RULE, rule)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                self._rules.append(rule)
            if not self._rules:
                raise OSError(errno.ENOTSUP, f"no audit exec rule for {platform.machine()}")
        except OSError:
            self.close()
            raise
        self._lost_at_start = self.status().lost

    def _open_receiver(self, before: AuditStatus, rcvbuf: int,
                       become_daemon: bool) -> socket.socket:
        if become_daemon and (before.pid == 0 or not _alive(before.pid)):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            try:
                _set_rcvbuf(sock, rcvbuf)
                sock.bind((0, 0))
                port = sock.getsockname()[0]
                # the kernel takes the registering socket's port from the request itself
                self._send_status(sock, AUDIT_STATUS_ENABLED | AUDIT_STATUS_PID
                                  | AUDIT_STATUS_BACKLOG_LIMIT, 1, os.getpid(),
                                  max(before.backlog_limit, BACKLOG_LIMIT), port)
                self.mode = "daemon"
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EEXIST:  # lost a race with another daemon: listen
                    raise
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        try:
            _set_rcvbuf(sock, rcvbuf)
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, AUDIT_NLGRP_READLOG)
        except OSError:
            sock.close()
            raise
        if not before.enabled:
            self._ctl.request(AUDIT_SET, _STATUS.pack(AUDIT_STATUS_ENABLED, 1, 0, 0, 0, 0, 0, 0,
                                                  0, 0))
        self.mode = "multicast"
        return sock

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def receive(self, timeout: float) -> list[AuditRecord]:
        """Records available within ``timeout`` seconds (drains what is queued)."""
        if self._sock is None:
            return []
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return []
        return self.drain()

    def drain(self, max_datagrams: int = 128,
              keep: frozenset[int] | None = EXEC_RECORD_TYPES) -> list[AuditRecord]:
        """What is queued, up to ``max_datagrams`` (one record each: ~25 execs), so a burst is
        published in small batches instead of after the whole backlog is parsed. Only records
        of the ``keep`` types are decoded (an exec also brings PATH, PROCTITLE, BPRM_FCAPS…
        records, half of what arrives); ``None`` keeps all."""
        out: list[AuditRecord] = []
        if self._sock is None:
            return out
        for _ in range(max_datagrams):
            try:
                data = self._sock.recv(MAX_RECORD, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            if keep is not None and len(data) >= _NLMSG.size \
                    and _NLMSG.unpack_from(data, 0)[1] not in keep:
                continue  # one record per datagram (see parse_messages)
            out.extend(parse_messages(data))
        return out

    def kernel_lost(self) -> int:
        """Records the kernel dropped since we started (backlog full, rate limit)."""
        try:
            return max(0, self.status().lost - self._lost_at_start)
        except OSError:
            return 0

    def status(self) -> AuditStatus:
        return self._ctl.status()

    def delivering(self) -> bool:
        """Whether exec records still come: auditing enabled, this instance's rule loaded and,
        as the audit daemon, still registered (``auditctl -e 0``, ``auditctl -D`` or another
        receiver taking the daemon's place silence the records without an error)."""
        try:
            status = self._ctl.status()
            keys = {rule_key(rule) for rule in self._ctl.rules()}
        except OSError:
            return False
        if status.enabled == 0 or self.key not in keys:
            return False
        return self.mode != "daemon" or status.pid == os.getpid()

    def close(self) -> None:
        for rule in self._rules:
            try:
                self._ctl.request(AUDIT_DEL_RULE, rule)
            except OSError:
                pass
        self._rules = []
        original, self._original = self._original, None
        if original is not None and self._scan_rules(live_only=True) is None:
            # the last agent instance out puts auditing back as it was before the first one
            # (while another instance's rule remains, auditing stays on for it)
            mask = AUDIT_STATUS_ENABLED | AUDIT_STATUS_BACKLOG_LIMIT
            if self.mode == "daemon":
                mask |= AUDIT_STATUS_PID
            try:
                self._ctl.request(AUDIT_SET, _STATUS.pack(mask, original[0], 0, 0, 0,
                                                          original[1], 0, 0, 0, 0))
            except OSError:
                pass
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._ctl.close()

    def _scan_rules(self, *, live_only: bool = False) -> tuple[int, int] | None:
        """The original (enabled, backlog) recorded by other agent instances' rules; stale
        rules (dead instances) are removed. ``live_only``: only live instances count."""
        try:
            rules = self._ctl.rules()
        except OSError:
            return None
        found: tuple[int, int] | None = None
        for raw in rules:
            parsed = _parse_key(rule_key(raw) or "")
            if parsed is None or raw in self._rules:
                continue
            pid, original = parsed
            if _alive(pid):
                found = original
            elif not live_only:
                found = found or original
                try:
                    self._ctl.request(AUDIT_DEL_RULE, raw)
                except OSError:
                    pass
        return found

    def _send_status(self, sock: socket.socket, mask: int, enabled: int, pid: int,
                     backlog: int, port: int) -> None:
        payload = _STATUS.pack(mask, enabled, 0, pid, 0, backlog, 0, 0, 0, 0)
        seq = self._ctl.next_seq()
        msg = _NLMSG.pack(_NLMSG.size + len(payload), AUDIT_SET, NLM_F_REQUEST | NLM_F_ACK,
                          seq, port) + payload
        sock.send(msg)
        _wait_ack(sock, seq)

def _wait_ack(sock: socket.socket, seq: int) -> None:
    for _ in range(100):
        ready, _, _ = select.select([sock], [], [], 2.0)
        if not ready:
            raise OSError(errno.ETIMEDOUT, "audit netlink: no acknowledgement")
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, mtype, _, mseq, _ = _NLMSG.unpack_from(data, offset)
            if length < _NLMSG.size:
                return
            body = data[offset + _NLMSG.size:offset + length]
            offset += (length + 3) & ~3
            if mtype == NLMSG_ERROR and mseq == seq:
                code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                if code:
                    raise OSError(code, f"audit set: {os.strerror(code)}")
                return
    raise OSError(errno.EPROTO, "audit netlink: no acknowledgement")


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _parse_key(key: str) -> tuple[int, tuple[int, int]] | None:
    """``vedette-<pid>-<n>-<enabled>-<backlog>`` → (pid, (enabled, backlog))."""
    if not key.startswith(KEY_PREFIX):
        return None
    parts = key[len(KEY_PREFIX):].split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), (min(int(parts[2]), 1), int(parts[3]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
