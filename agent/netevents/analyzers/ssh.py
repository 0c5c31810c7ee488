"""SSH on ``network.ssh_ports``: one ``network_ssh`` event per connection, with the version
lines and the authentication attempts and outcome inferred from the encrypted packet sizes
(:mod:`agent.netevents.analyzers.ssh_session` has the inference and its limits).

A connection is tracked from its first segment that starts with a version line (``SSH-``): a
spoofed SYN flood creates nothing, only completed handshakes do. The client is the side not
on an SSH port (both on one: the sender toward the port). The event is emitted once:

* when the authentication succeeded (``ssh.state: established``, at the server's first
  message after the success that confirms it; the connection is then no longer followed, so
  a long session or a bulk copy costs one dictionary look-up a segment);
* when the connection ends (an RST, or a FIN from both sides: ``closed``), after
  ``network.ssh_idle_timeout_seconds`` without a segment (``timeout``), or at the end of a
  capture file (``end_of_capture``).

A RST or FIN ends a connection only at the sender's next sequence number (the one the
receiver acts on, RFC 5961); the client's is first known from the server's acknowledgment.

State is bounded: at most ``network.max_ssh_connections`` connections; when full, idle ones
are expired first, then the oldest connection without both version lines is dropped (what a
spoofed flood creates), and a new connection that still finds no room is not followed (each
counted in ``table_overflows["ssh"]``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, ClassVar, Final

from agent.events import Event, LogSource
from agent.netdecode.layers import PROTO_TCP
from agent.netevents.analyzers.base import Analyzer, Packet
from agent.netevents.analyzers.ssh_session import SshSession
from agent.netevents.direction import ip_text
from agent.netevents.state import TrafficState

NETWORK_SSH: Final = LogSource("vedette", "network_ssh")
EXPIRY_EVERY: Final = 1.0
"""Seconds of packet time between two sweeps of idle connections."""


def tcp_header(pkt: Packet) -> int | None:
    """Where the TCP header of a segment whose payload starts at ``pkt.l4`` begins (found by
    its length field and ports; ``None`` when it cannot be)."""
    data, l4 = pkt.data, pkt.l4
    ports = pkt.sport.to_bytes(2, "big") + pkt.dport.to_bytes(2, "big")
    for words in (8, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15):
        start = l4 - 4 * words
        if start >= 0 and data[start + 12] >> 4 == words and data[start:start + 4] == ports:
            return start
    return None


class SshAnalyzer(Analyzer):
    name: ClassVar[str] = "ssh"
    transports: ClassVar[tuple[int, ...]] = (PROTO_TCP,)

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.ssh_ports = frozenset(state.settings.ssh_ports)
        self.max_connections = state.settings.max_ssh_connections
        self.idle_timeout = state.settings.ssh_idle_timeout_seconds
        self.sessions: dict[bytes, SshSession] = {}
        self.fins: dict[bytes, int] = {}
        self.unconfirmed: OrderedDict[bytes, None] = OrderedDict()
        """Connections whose two version lines were not both read yet, oldest first: what
        makes room when the table is full (a flood of spoofed ``SSH-`` segments creates only
        these, and cannot push out a connection in its key exchange or authentication)."""
        self.next_expiry = 0.0

    def ports(self) -> Iterable[int]:
        return self.ssh_ports

    def packet(self, out: list[Event], pkt: Packet) -> None:
        if pkt.ts >= self.next_expiry:
            out.extend(self._sweep(pkt.ts))
        if pkt.dport in self.ssh_ports:
            key = pkt.src + pkt.dst + pkt.sport.to_bytes(2, "big") + pkt.dport.to_bytes(2, "big")
            from_client = True
        else:
            key = pkt.dst + pkt.src + pkt.dport.to_bytes(2, "big") + pkt.sport.to_bytes(2, "big")
            from_client = False
        session = self.sessions.get(key)
        if session is None:  # most segments on the port: sessions done or never followed
            if (pkt.end - pkt.l4 < 4 or not pkt.data.startswith(b"SSH-", pkt.l4)
                    or not self._room(out, pkt.ts)):
                return
            session = SshSession(pkt.ts, pkt.family, pkt.src if from_client else pkt.dst,
                                 pkt.sport if from_client else pkt.dport,
                                 pkt.dst if from_client else pkt.src,
                                 pkt.dport if from_client else pkt.sport)
            self.sessions[key] = session
            self.unconfirmed[key] = None
        session.last = pkt.ts
        payload = pkt.data[pkt.l4:pkt.end]
        # the true payload size: the frame may be cut by the snap length (not when the whole
        # frame was captured: then Ethernet padding of a tiny frame must not count)
        length = pkt.end - pkt.l4 if len(pkt.data) >= pkt.wire else pkt.wire - pkt.l4
        header = tcp_header(pkt)
        seq = None if header is None else int.from_bytes(pkt.data[header + 4:header + 8], "big")
        if header is not None and pkt.flags & 0x10 and not from_client:
            # the server's ACK says where the client's bytes start (not the other way round:
            # a client's ACK the server drops as unacceptable would still be read here)
            session.expect(True,
                           int.from_bytes(pkt.data[header + 8:header + 12], "big"))
        ends = pkt.flags & 0x05 and session.in_sequence(from_client, seq)
        if pkt.flags & 0x05 and not ends:
            self.state.stats.evasion["ssh_end_out_of_sequence"] += 1
        session.segment(from_client, seq if length else None, payload, length, pkt.wire)
        if key in self.unconfirmed and session.confirmed:
            del self.unconfirmed[key]
        if session.decided:
            self._end(out, key, pkt.ts, "established")
        elif not ends:
            return
        elif pkt.flags & 0x04:
            self._end(out, key, pkt.ts, "closed")
        else:
            fins = self.fins.get(key, 0) | (1 if from_client else 2)
            if fins == 3:
                self._end(out, key, pkt.ts, "closed")
            else:
                self.fins[key] = fins

    def _room(self, out: list[Event], ts: float) -> bool:
        if len(self.sessions) < self.max_connections:
            return True
        out.extend(self._sweep(ts))
        if len(self.sessions) < self.max_connections:
            return True
        self.state.stats.table_overflows["ssh"] += 1
        if self.unconfirmed:  # dropped unreported: it never showed two live ends
            key, _ = self.unconfirmed.popitem(last=False)
            del self.sessions[key]
            self.fins.pop(key, None)
            return True
        return False

    def _end(self, out: list[Event], key: bytes, ts: float, how: str) -> None:
        session = self.sessions.pop(key)
        self.fins.pop(key, None)
        self.unconfirmed.pop(key, None)
        session.close()
        if session.provoked:
            self.state.stats.evasion["ssh_success_size_provoked"] += 1
        self.state.stats.events["ssh"] += 1
        out.append(ssh_event(ts, session, how,
                             self.state.direction.of(session.client, session.server)))

    def expire(self, now: float) -> list[Event]:
        """Connections idle for ``ssh_idle_timeout_seconds`` end as ``timeout`` (swept at
        most every :data:`EXPIRY_EVERY` seconds)."""
        return self._sweep(now) if now >= self.next_expiry else []

    def _sweep(self, now: float) -> list[Event]:
        self.next_expiry = now + EXPIRY_EVERY
        out: list[Event] = []
        limit = now - self.idle_timeout
        for key in [k for k, s in self.sessions.items() if s.last <= limit]:
            self._end(out, key, self.sessions[key].last, "timeout")
        return out

    def flush(self) -> list[Event]:
        out: list[Event] = []
        for key in list(self.sessions):
            self._end(out, key, self.sessions[key].last, "end_of_capture")
        return out


def ssh_event(ts: float, s: SshSession, how: str, direction: str) -> Event:
    """The ``network_ssh`` event of one connection (field catalogue: docs/events.md)."""
    attempts = s.failures + (1 if s.success else 0)
    fields: dict[str, Any] = {
        "event.dataset": "network.ssh",
        "event.action": f"ssh_{s.outcome}" if s.outcome != "unknown" else "ssh_connection",
        "event.outcome": s.outcome,
        "event.duration": int(max(0.0, ts - s.start) * 1e9),
        "source.ip": ip_text(s.client),
        "source.port": s.client_port,
        "source.bytes": s.c.bytes,
        "source.packets": s.c.packets,
        "destination.ip": ip_text(s.server),
        "destination.port": s.server_port,
        "destination.bytes": s.s.bytes,
        "destination.packets": s.s.packets,
        "network.type": "ipv4" if s.family == 4 else "ipv6",
        "network.transport": "tcp",
        "network.iana_number": PROTO_TCP,
        "network.direction": direction,
        "network.bytes": s.c.bytes + s.s.bytes,
        "ssh.auth_attempts": attempts,
        "ssh.auth_failures": s.failures,
        "ssh.auth_success": s.success,
        "ssh.auth_outcome": s.outcome,
        "ssh.auth_inference": s.basis,
        "ssh.key_exchange": s.c.newkeys and s.s.newkeys,
        "ssh.state": how,
    }
    if s.client_banner is not None:
        fields["ssh.client"] = s.client_banner
    if s.server_banner is not None:
        fields["ssh.server"] = s.server_banner
    return Event(ts, NETWORK_SSH, fields)
