"""Listening sockets that appear or disappear, and new outbound connections, with their process.

:func:`parse_proc_net` reads the kernel socket tables (``/proc/net/tcp``, ``tcp6``, ``udp``,
``udp6``: cheap, no per-process scan). Only when a run finds sockets it has not seen before does
:func:`socket_owners` walk ``/proc/<pid>/fd`` to find the processes owning those inodes. The
first run records a baseline and reports nothing; later runs report

* ``vedette``/``listening_socket`` events, ``event.action`` ``listening_started`` or
  ``listening_stopped`` (``server.ip``, ``server.port``, ``network.transport``, process, user);
* ``linux``/``network_connection`` events for established TCP connections this host initiated
  (local port is not one of its listening ports) to a destination (remote address, port, uid)
  not reported within ``destination_ttl_seconds`` (1 h): ``network.direction: outbound``,
  ``network.initiated: true``, ``destination.ip``/``destination.port`` and the process. A
  service that opens a new connection to its database per request is one event an hour, not
  one per connection. Connections that open and close between two runs are not seen
  (sampling).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agent.collectors.base import AnyCollector, CollectorContext
from agent.errors import CollectorError
from agent.events import NETWORK_CONNECTION, Event, LogSource
from agent.metrics import AgentMetrics

LISTENING_SOCKET = LogSource("vedette", "listening_socket")
MAX_DESTINATIONS = 20_000
_TCP_LISTEN = "0A"
_TCP_ESTABLISHED = "01"
_UDP_UNCONNECTED = "07"
_TCP_STATES = frozenset({_TCP_LISTEN, _TCP_ESTABLISHED})
_UDP_STATES = frozenset({_UDP_UNCONNECTED})
_TABLES = (("tcp", "tcp", False), ("tcp6", "tcp", True), ("udp", "udp", False),
           ("udp6", "udp", True))


class SocketEntry(NamedTuple):
    transport: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str
    uid: int
    inode: int


def _addr(text: str, v6: bool) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if v6:
        raw = b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw))
        ip = ipaddress.IPv6Address(raw)
        ip_s = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
    else:
        ip_s = socket.inet_ntoa(struct.pack("<I", struct.unpack(">I", raw)[0]))
    return ip_s, int(port, 16)


def parse_proc_net(text: str, transport: str, v6: bool,
                   states: frozenset[str] | None = None) -> list[SocketEntry]:
    """Entries of one ``/proc/net/{tcp,udp}[6]`` table (only ``states`` when given; a busy
    server's table is mostly TIME_WAIT rows nobody needs); malformed rows are skipped."""
    out: list[SocketEntry] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or (states is not None and parts[3] not in states):
            continue
        try:
            lip, lport = _addr(parts[1], v6)
            rip, rport = _addr(parts[2], v6)
            out.append(SocketEntry(transport, lip, lport, rip, rport, parts[3], int(parts[7]),
                                   int(parts[9])))
        except (ValueError, struct.error):
            continue
    return out


class Owner(NamedTuple):
    pid: int
    name: str | None
    executable: str | None
    args: tuple[str, ...] = ()


def socket_owners(proc_root: Path, inodes: set[int]) -> dict[int, Owner]:
    """inode → owning process, by scanning ``/proc/<pid>/fd`` (stops when all are found)."""
    found: dict[int, Owner] = {}
    if not inodes:
        return found
    wanted = {f"socket:[{i}]": i for i in inodes}
    try:
        pids = [e.name for e in os.scandir(proc_root) if e.name.isascii() and e.name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        base = f"{proc_root}/{pid}"
        try:
            fds = os.listdir(f"{base}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{base}/fd/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                found[inode] = _owner(base, int(pid))
        if len(found) == len(wanted):
            break
    return found


def _owner(base: str, pid: int) -> Owner:
    try:
        exe: str | None = os.readlink(f"{base}/exe")
    except OSError:
        exe = None
    try:
        with open(f"{base}/comm", encoding="utf-8", errors="replace") as fh:
            name: str | None = fh.read(64).strip()
    except OSError:
        name = None
    try:
        with open(f"{base}/cmdline", "rb") as fh:
            raw = fh.read(4096)
    except OSError:
        raw = b""
    args = tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0") if raw)
    return Owner(pid, name, exe, args)


class SocketsCollector:
    name = "sockets"

    def __init__(
        self,
        interval_seconds: float = 10.0,
        *,
        outbound: bool = True,
        include_loopback: bool = False,
        max_events_per_run: int = 500,
        proc_root: Path = Path("/proc"),
        metrics: AgentMetrics | None = None,
        host_name: str = "",
        clock: Callable[[], float] = time.time,
        destination_ttl_seconds: float = 3600.0,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._outbound = outbound
        self._loopback = include_loopback
        self._max_events = max_events_per_run
        self._proc = proc_root
        self._metrics = metrics
        self._host = host_name
        self._clock = clock
        self._listeners: dict[tuple[str, str, int], SocketEntry] | None = None
        # destination (remote ip, remote port, uid) -> when it was last reported
        self._destinations: OrderedDict[tuple[str, int, int], float] = OrderedDict()
        self._destination_ttl = destination_ttl_seconds

    def read_tables(self) -> list[SocketEntry]:
        entries: list[SocketEntry] = []
        for table, transport, v6 in _TABLES:
            try:
                text = (self._proc / "net" / table).read_text()
            except OSError:
                continue
            wanted = _TCP_STATES if transport == "tcp" else _UDP_STATES
            entries.extend(parse_proc_net(text, transport, v6, wanted))
        return entries

    def collect(self) -> list[Event]:
        now = self._clock()
        entries = self.read_tables()
        listeners = {(e.transport, e.local_ip, e.local_port): e for e in entries if _listening(e)}
        ports = {e.local_port for e in listeners.values() if e.transport == "tcp"}
        connections = {(e.remote_ip, e.remote_port, e.uid): e
                       for e in entries if e.transport == "tcp" and e.state == _TCP_ESTABLISHED
                       and e.local_port not in ports
                       and (self._loopback or not _loopback(e.remote_ip))}
        if self._metrics is not None:
            self._metrics.listening_sockets.set(len(listeners))
        first_run = self._listeners is None
        new_conns = self._new_destinations(connections, now)
        if self._listeners is None:  # first run: baseline only
            self._listeners = listeners
            return []
        opened = [e for k, e in listeners.items() if k not in self._listeners]
        closed = [e for k, e in self._listeners.items() if k not in listeners]
        self._listeners = listeners
        if not self._outbound or first_run:
            new_conns = []
        owners = socket_owners(self._proc, {e.inode for e in (*opened, *new_conns) if e.inode})
        events = [self._listener_event(now, e, "listening_started", owners.get(e.inode))
                  for e in opened]
        events += [self._listener_event(now, e, "listening_stopped", None) for e in closed]
        events += [self._connection_event(now, e, owners.get(e.inode)) for e in new_conns]
        return events[: self._max_events]

    def _new_destinations(self, connections: dict[tuple[str, int, int], SocketEntry],
                          now: float) -> list[SocketEntry]:
        """Connections to destinations not reported (for this uid) within the TTL.

        Keyed without the local port: an application that opens a new connection to its
        database for every request is one destination, not one event per connection.
        """
        fresh: list[SocketEntry] = []
        for key, entry in connections.items():
            last = self._destinations.get(key)
            if last is None or now - last >= self._destination_ttl:
                fresh.append(entry)
                self._destinations[key] = now
            self._destinations.move_to_end(key)
        while len(self._destinations) > MAX_DESTINATIONS:
            self._destinations.popitem(last=False)
        return fresh

    def _common(self, entry: SocketEntry, owner: Owner | None) -> dict[str, Any]:
        f: dict[str, Any] = {"network.transport": entry.transport,
                             "network.type": "ipv6" if ":" in entry.local_ip else "ipv4",
                             "user.id": str(entry.uid)}
        try:
            f["user.name"] = pwd.getpwuid(entry.uid).pw_name
        except (KeyError, OverflowError):
            pass
        if owner is not None:
            f["process.pid"] = owner.pid
            if owner.name:
                f["process.name"] = owner.name
            if owner.executable:
                f["process.executable"] = owner.executable
            if owner.args:  # what a listener runs for each client (ncat -e, socat EXEC:)
                f["process.args"] = list(owner.args)
                f["process.command_line"] = " ".join(owner.args)
        if self._host:
            f["host.name"] = self._host
        return f

    def _listener_event(self, now: float, e: SocketEntry, action: str,
                        owner: Owner | None) -> Event:
        f = self._common(e, owner)
        f.update({"event.kind": "event", "event.category": "network", "event.action": action,
                  "event.dataset": "vedette.sockets", "server.ip": e.local_ip,
                  "server.port": e.local_port,
                  "vedette.socket.wildcard": e.local_ip in ("0.0.0.0", "::")})
        return Event(now, LISTENING_SOCKET, f)

    def _connection_event(self, now: float, e: SocketEntry, owner: Owner | None) -> Event:
        f = self._common(e, owner)
        f.update({"event.kind": "event", "event.category": "network",
                  "event.action": "connection_established", "event.dataset": "vedette.sockets",
                  "network.direction": "outbound", "network.initiated": True,
                  "source.ip": e.local_ip, "source.port": e.local_port,
                  "destination.ip": e.remote_ip, "destination.port": e.remote_port})
        return Event(now, NETWORK_CONNECTION, f)


def _listening(e: SocketEntry) -> bool:
    if e.transport == "tcp":
        return e.state == _TCP_LISTEN
    return e.state == _UDP_UNCONNECTED and e.remote_port == 0 and e.local_port != 0


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``sockets`` section's collector; CollectorError without ``/proc/net/tcp``."""
    section = ctx.config.sockets
    if not section.enabled:
        return []
    proc = Path("/proc")
    if not (proc / "net" / "tcp").exists():
        raise CollectorError("/proc/net/tcp is not readable")
    return [SocketsCollector(section.interval_seconds, outbound=section.outbound,
                             include_loopback=section.include_loopback,
                             max_events_per_run=section.max_events_per_run, proc_root=proc,
                             metrics=ctx.metrics, host_name=ctx.identity.host_name)]
