"""The Linux process-events connector (netlink ``NETLINK_CONNECTOR``, ``CN_IDX_PROC``).

The kernel multicasts one message per fork, exec, uid change and exit to subscribed sockets,
so processes that live for a millisecond are still seen. Subscribing needs ``CAP_NET_ADMIN``
in the initial network namespace. :func:`parse_messages` decodes a datagram (pure, tested on
bytes); :class:`ProcConnector` owns the socket. A receive buffer overrun (``ENOBUFS``: the
kernel dropped events because we were too slow) is reported as ``lost`` and counted.

Layout: ``nlmsghdr`` (16 bytes) · ``cn_msg`` (20 bytes) · ``proc_event``: ``what`` u32,
``cpu`` u32, ``timestamp_ns`` u64, then the per-kind union.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct
from typing import NamedTuple

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3

PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_EXIT = 0x80000000

_NLMSG = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_HEAD = struct.Struct("=IIQ")
_TWO = struct.Struct("=II")
_FOUR = struct.Struct("=IIII")
_DATA_AT = _NLMSG.size + _CN_MSG.size


class ProcEvent(NamedTuple):
    kind: str  # fork | exec | uid | exit
    pid: int  # the thread-group id (process id); for fork: the child
    parent_pid: int = 0  # fork only
    uid: int = -1  # uid events: the new real uid
    euid: int = -1  # uid events: the new effective uid
    thread: bool = False  # fork of a thread (child pid != child tgid)


def parse_messages(data: bytes) -> list[ProcEvent]:
    """Every proc event in one datagram; truncated or foreign messages are skipped."""
    events: list[ProcEvent] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, _, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            break
        body = offset + _NLMSG.size
        if length >= _DATA_AT + _HEAD.size:
            idx, val, _, _, _, _ = _CN_MSG.unpack_from(data, body)
            if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
                event = _parse_event(data, offset + _DATA_AT, offset + length)
                if event is not None:
                    events.append(event)
        offset += (length + 3) & ~3
    return events


def _parse_event(data: bytes, at: int, end: int) -> ProcEvent | None:
    what, _, _ = _HEAD.unpack_from(data, at)
    at += _HEAD.size
    if what == PROC_EVENT_EXEC and at + _TWO.size <= end:
        _, tgid = _TWO.unpack_from(data, at)
        return ProcEvent("exec", tgid)
    if what == PROC_EVENT_FORK and at + _FOUR.size <= end:
        _, parent_tgid, child_pid, child_tgid = _FOUR.unpack_from(data, at)
        return ProcEvent("fork", child_tgid, parent_tgid, thread=child_pid != child_tgid)
    if what == PROC_EVENT_EXIT and at + _TWO.size <= end:
        pid, tgid = _TWO.unpack_from(data, at)
        if pid != tgid:
            return None  # a thread exited, not the process
        return ProcEvent("exit", tgid)
    if what == PROC_EVENT_UID and at + _FOUR.size <= end:
        _, tgid, ruid, euid = _FOUR.unpack_from(data, at)
        return ProcEvent("uid", tgid, uid=ruid, euid=euid)
    return None


# What the collector uses. Linux >= 6.6 filters proc events per socket when the listen
# message carries an event mask (``struct proc_input``); the comm, sid, ptrace, gid and
# coredump events of a busy host (threads renaming themselves …) then never reach us.
# ``PROC_EVENT_UID`` (``struct id_proc_event``: pid, tgid, real uid, effective uid) is sent by
# ``commit_creds`` whenever the real, effective, saved or filesystem uid changes — including
# the exec of a setuid program.
WANTED_EVENTS = PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_UID | PROC_EVENT_EXIT
FILTER_KERNEL = (6, 6)


def control_message(op: int, port: int, events: int | None = None) -> bytes:
    """The connector control datagram; ``events`` (a mask) needs a filtering kernel: older
    kernels ignore a listen message of that size, so only send it when :func:`can_filter`."""
    payload = struct.pack("=I", op) if events is None else struct.pack("=II", op, events)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, port) + cn


def can_filter(release: str | None = None) -> bool:
    """Whether the running kernel (``uname -r``) filters proc events by type (>= 6.6)."""
    release = os.uname().release if release is None else release
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m[1]), int(m[2])) >= FILTER_KERNEL


class ProcConnector:
    """A subscribed connector socket. Raises ``OSError`` when the kernel refuses.

    ``events``: the kinds the kernel sends on a filtering kernel (older kernels send all)."""

    def __init__(self, rcvbuf_bytes: int = 8 << 20, *, filtered: bool | None = None,
                 events: int = WANTED_EVENTS) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf_bytes)  # SO_RCVBUFFORCE
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            self._sock.bind((0, CN_IDX_PROC))
            self._port = self._sock.getsockname()[0] or os.getpid()
            mask = events if (can_filter() if filtered is None else filtered) else None
            self._sock.send(control_message(PROC_CN_MCAST_LISTEN, self._port, mask))
        except OSError:
            self._sock.close()
            raise
        self.lost = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self, timeout: float) -> list[ProcEvent]:
        """Events available within ``timeout`` seconds (drains what is queued)."""
        if timeout > 0:  # 0: the caller's select said ready; recv would not block anyway
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return []
        events: list[ProcEvent] = []
        for _ in range(256):
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            events.extend(parse_messages(data))
        return events

    def close(self) -> None:
        try:
            self._sock.send(control_message(PROC_CN_MCAST_IGNORE, self._port))
        except OSError:
            pass
        self._sock.close()
