"""Concurrent open TCP connections per (client, service) and per service, with their bytes per
second: what application-layer DoS (slowloris, slow read, R-U-Dead-Yet) looks like on the wire.

A connection is tracked from its SYN-ACK (the server answered: a spoofed SYN flood never fills
this table) until an RST, or :data:`IDLE_TIMEOUT` seconds without a segment. The SYN-ACK sender
is the server, the other side the client. Bytes (wire bytes, both directions) come from the
per-connection counts the bulk path already keeps (:meth:`TrafficState.on_second_end
<agent.netevents.state.TrafficState.on_second_end>`: ordinary segments are never pulled into
the per-packet path for this) plus the ordinary segments that take the per-packet path anyway
(IPv6, ports a port analyzer reads).

A FIN+ACK is an ordinary segment (counted in bulk, seen here only as activity), so a connection
closed with FIN stays counted until its idle timeout; that is why only *held* connections count:
open for at least :data:`HELD_SECONDS` (first to last activity) — a health check opening a
connection every 0.2 s never has one. Every :data:`REPORT_EVERY` seconds (and at the end of a
capture) one ``network_sessions`` event per (client, service) with at least
:data:`CLIENT_FLOOR` held connections and one per service with at least :data:`SERVICE_FLOOR`
slow ones (``sessions.open``, ``sessions.slow``, ``sessions.bytes_per_second``,
``sessions.clients``), at most :data:`MAX_EVENTS` per report. What makes a held connection
*slow* — stalled (the server still waiting for a request the client keeps dribbling out) or
trickling (a slow read) — is :mod:`agent.netevents.analyzers.held_session`'s: an idle
keep-alive connection whose requests were answered is neither, however slow its average.

A SYN-ACK alone only makes a *pending* connection (its own table, :data:`MAX_PENDING`, oldest
dropped first, counted under ``table="tcp_sessions_pending"``): it is counted — and can take a
place in the connection table — only once the client sends a segment on it (the handshake's
ACK). Forged SYN-ACKs (or backscatter of someone else's spoofed flood) therefore cannot evict
the held connections of a slowloris from the table, nor make an address that never answers
them the "client" of anything: naming an innocent address takes forging its segments too.

A pending connection the client has not confirmed within :data:`PENDING_TIMEOUT` seconds,
answered with an RST, or evicted, is *half-open*: each report also makes one
``service_half_open`` event per service with at least :data:`HALF_OPEN_FLOOR` of them since
the last (``sessions.half_open``) — a SYN flood's answered SYNs, which junk packets cannot
dilute the way they dilute a SYN ratio.

An RST does not end a counted connection at once: it stops counting it, and the connection is
dropped :data:`RESET_GRACE` seconds later unless a segment arrives on it in a later second.
The analyzer cannot check an RST's sequence number (ordinary segments are counted in bulk), and
a server ignores an RST outside its window (RFC 5961), so a slowloris sending one forged RST
per connection would otherwise vanish from the table while its connections stay open.

Bounds: :data:`MAX_CONNECTIONS` connections and :data:`MAX_CLIENTS` clients; the least recently
active connection goes first when either is full (counted in
``vedette_capture_table_overflows_total{table="tcp_sessions"}``); events past
:data:`MAX_EVENTS` are counted under ``table="tcp_sessions_events"``. A report walks every
tracked connection (at most :data:`MAX_CONNECTIONS` every :data:`REPORT_EVERY` seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from agent.events import Event, LogSource
from agent.netdecode.layers import PROTO_TCP
from agent.netevents.analyzers.base import REFUSED_SYNACK, Analyzer, Packet
from agent.netevents.analyzers.held_session import HELD_SECONDS, Session, is_slow
from agent.netevents.analyzers.tcp import connection_key
from agent.netevents.direction import ip_text
from agent.netevents.entries import Counts
from agent.netevents.state import TrafficState

NETWORK_SESSIONS: Final = LogSource("vedette", "network_sessions")
MAX_CONNECTIONS: Final = 65536
MAX_CLIENTS: Final = 16384
MAX_PENDING: Final = 16384
IDLE_TIMEOUT: Final = 120
"""Seconds without a segment after which a connection is taken as closed (web servers time out
an incomplete request after 60 to 300 s; slowloris tools send a header every 4 to 15 s)."""
RESET_GRACE: Final = 30
"""Seconds a connection reset by an RST stays tracked (not counted) in case segments go on
(slowloris tools send a header every 4 to 15 s)."""
REPORT_EVERY: Final = 5
PENDING_TIMEOUT: Final = 10
"""Seconds a SYN-ACK waits for the client's segment before the connection counts as half-open
(the handshake's ACK takes one round trip; Linux retransmits the SYN-ACK at 1, 3 and 7 s)."""
HALF_OPEN_FLOOR: Final = 100
"""Half-open connections of one service in one report for a ``service_half_open`` event."""
CLIENT_FLOOR: Final = 50
SERVICE_FLOOR: Final = 100
"""A service is reported once this many of its held connections are slow (any clients)."""
MAX_EVENTS: Final = 256


class TcpSessionsAnalyzer(Analyzer):
    name: ClassVar[str] = "tcp_sessions"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_TCP,)
    bulk_kinds: ClassVar[tuple[int, ...]] = (REFUSED_SYNACK,)
    """A SYN-ACK counted in bulk is still pended in order (:meth:`refused_synack`)."""

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.sessions: OrderedDict[bytes, Session] = OrderedDict()
        """Least recently active first, keyed by the server → client key."""
        self.pending: OrderedDict[bytes, Session] = OrderedDict()
        """SYN-ACKs the client has not answered yet, oldest first, same keys."""
        self.index: dict[bytes, Session] = {}
        """Both directions' keys → the session."""
        self.clients: dict[bytes, int] = {}
        self.next_report = -1
        self.second = -1
        """The last second whose counts were read."""
        self.reported = -1
        self.half_open: dict[tuple[bytes, int], int] = {}
        """(server, port) → SYN-ACKs never answered by the client (expired, evicted, or
        answered with an RST) since the last report."""
        self.touched: list[Session] = []
        """Connections with per-packet segments tallied this second (folded when it ends)."""
        state.on_second_end(self._second_end)

    # ------------------------------------------------------------------ packets

    def packet(self, out: list[Event], pkt: Packet) -> None:
        flags = pkt.flags
        if flags & 0x12 == 0x02:  # a SYN: nothing to learn (the cheap case of a flood)
            return
        if flags & 0x12 == 0x12:  # SYN-ACK: the server answered
            key = connection_key(pkt)
            if key not in self.index:
                self._pend(key, pkt.src, pkt.dst, pkt.sport, int(pkt.ts)).header = pkt.wire
            return
        key = connection_key(pkt)
        s = self.index.get(key) if self.index else None
        if s is None:
            return
        if flags & 0x04:  # RST: closed (a counted connection only after RESET_GRACE, see above)
            if s.confirmed:
                s.reset = int(pkt.ts)
            else:
                self._half_open(s)
            return
        if not s.confirmed:
            if key != s.keys[1]:  # only the client's own segment confirms it
                return
            self._confirm(s)
        second = int(pkt.ts)
        if s.tally(second, key == s.keys[1], 1, pkt.wire):
            self.touched.append(s)
        self._touch(s, second)

    def refused_synack(self, ts: float, key: bytes, wire: int) -> None:
        """A SYN-ACK whose event was refused, at its turn: what :meth:`packet` does (IPv4)."""
        if key not in self.index:
            self._pend(key, key[:4], key[4:8], (key[8] << 8) | key[9], int(ts)).header = wire

    def _pend(self, key: bytes, server: bytes, client: bytes, port: int,
              second: int) -> Session:
        pending = self.pending
        while len(pending) >= MAX_PENDING:
            self.state.stats.table_overflows["tcp_sessions_pending"] += 1
            self._half_open(next(iter(pending.values())))
        half = len(server)
        reverse = key[half:2 * half] + key[:half] + key[2 * half + 2:] + key[2 * half:2 * half + 2]
        s = Session(client, server, port, second, (key, reverse))
        pending[key] = s
        self.index[key] = s
        self.index[reverse] = s
        return s

    def _confirm(self, s: Session) -> None:
        """The client answered: from the pending table into the connection table."""
        sessions, clients, client = self.sessions, self.clients, s.client
        del self.pending[s.keys[0]]
        while sessions and (len(sessions) >= MAX_CONNECTIONS
                            or (client not in clients and len(clients) >= MAX_CLIENTS)):
            self.state.stats.table_overflows["tcp_sessions"] += 1
            self._close(next(iter(sessions.values())))
        s.confirmed = True
        sessions[s.keys[0]] = s
        clients[client] = clients.get(client, 0) + 1

    def _half_open(self, s: Session) -> None:
        """A pending connection the client never completed: counted for its service, dropped."""
        service = (s.server, s.port)
        self.half_open[service] = self.half_open.get(service, 0) + 1
        self._close(s)

    def _close(self, s: Session) -> None:
        key = s.keys[0]
        for k in s.keys:
            self.index.pop(k, None)
        if not s.confirmed:
            del self.pending[key]
            return
        del self.sessions[key]
        left = self.clients[s.client] - 1
        if left:
            self.clients[s.client] = left
        else:
            del self.clients[s.client]

    def _touch(self, s: Session, second: int) -> None:
        if s.reset >= 0 and second > s.reset:  # segments after the RST: it did not close it
            s.reset = -1
        if second > s.last:
            s.last = second
            self.sessions.move_to_end(s.keys[0])

    # ------------------------------------------------------------------ time

    def _second_end(self, segments: Mapping[bytes, Counts], second: int) -> list[Event]:
        index = self.index
        touched, self.touched = self.touched, []
        if index:
            for key, counts in segments.items():
                s = index.get(key)
                if s is not None:
                    client = key == s.keys[1]
                    if not s.confirmed:
                        if not client:  # see packet()
                            continue
                        self._confirm(s)
                    if s.tally(second, client, counts.packets, counts.bytes):
                        touched.append(s)
                    self._touch(s, second)
        for s in touched:
            s.fold()
        self.second = second
        if second < self.next_report:
            return []
        self.next_report = second + REPORT_EVERY
        return self._report(second)

    def flush(self) -> list[Event]:
        """End of input: a last report (the open second's counts were read by the roll)."""
        if (not (self.sessions or self.pending or self.half_open) or self.second < 0
                or self.reported == self.second):
            return []
        return self._report(self.second)

    def _report(self, second: int) -> list[Event]:
        """Drop connections idle past the timeout; the events of groups over their floor."""
        self.reported = second
        limit = second - IDLE_TIMEOUT
        sessions = self.sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if oldest.last > limit:
                break
            self._close(oldest)
        pending = self.pending
        while pending:
            oldest = next(iter(pending.values()))
            if oldest.first > second - PENDING_TIMEOUT:
                break
            self._half_open(oldest)
        per_client: dict[tuple[bytes, bytes, int], list[int]] = {}
        per_service: dict[tuple[bytes, int], list[int]] = {}
        service_clients: dict[tuple[bytes, int], set[bytes]] = {}
        reset = [s for s in sessions.values() if 0 <= s.reset <= second - RESET_GRACE]
        for s in reset:
            self._close(s)
        for s in sessions.values():
            if s.reset >= 0:
                continue
            lifetime = s.last - s.first
            if lifetime < HELD_SECONDS:
                continue
            rate = s.bytes // (second - s.first + 1)
            slow = 1 if is_slow(s, second) else 0
            c = per_client.get((s.client, s.server, s.port))
            if c is None:
                per_client[(s.client, s.server, s.port)] = [1, slow, rate]
            else:
                c[0] += 1
                c[1] += slow
                c[2] += rate
            v = per_service.get((s.server, s.port))
            if v is None:
                per_service[(s.server, s.port)] = [1, slow, rate]
                service_clients[(s.server, s.port)] = {s.client}
            else:
                v[0] += 1
                v[1] += slow
                v[2] += rate
                service_clients[(s.server, s.port)].add(s.client)
        out: list[Event] = []
        ts = second + 0.999999
        of = self.state.direction.of

        def local(server: bytes) -> str:
            return "inbound" if self.state.direction.is_local(server) else "external"
        for (client, server, port), (n, slow, rate) in sorted(per_client.items()):
            if n >= CLIENT_FLOOR:
                out.append(sessions_event(ts, client, server, port, n, slow, rate, 1,
                                          of(client, server)))
        for (server, port), (n, slow, rate) in sorted(per_service.items()):
            if slow >= SERVICE_FLOOR:
                out.append(sessions_event(ts, None, server, port, n, slow, rate,
                                          len(service_clients[(server, port)]),
                                          local(server)))
        half_open, self.half_open = self.half_open, {}
        for (server, port), n in sorted(half_open.items()):
            if n >= HALF_OPEN_FLOOR:
                out.append(half_open_event(ts, server, port, n, local(server)))
        if len(out) > MAX_EVENTS:
            self.state.stats.table_overflows["tcp_sessions_events"] += len(out) - MAX_EVENTS
            out = out[:MAX_EVENTS]
        self.state.stats.events["sessions"] += len(out)
        return out


def sessions_event(ts: float, client: bytes | None, server: bytes, port: int, held: int,
                   slow: int, rate: int, clients: int, direction: str) -> Event:
    """One ``network_sessions`` event (field catalogue: docs/events.md)."""
    fields = _service_fields(
        "client_sessions" if client is not None else "service_sessions", server, port,
        direction)
    fields.update({
        "sessions.open": held,
        "sessions.slow": slow,
        "sessions.bytes_per_second": rate,
        "sessions.clients": clients,
    })
    if client is not None:
        fields["source.ip"] = ip_text(client)
    return Event(ts, NETWORK_SESSIONS, fields)


def half_open_event(ts: float, server: bytes, port: int, half_open: int,
                    direction: str) -> Event:
    """One ``service_half_open`` ``network_sessions`` event (field catalogue: docs/events.md):
    SYN-ACKs of one service its clients never answered, since the last report."""
    fields = _service_fields("service_half_open", server, port, direction)
    fields["sessions.half_open"] = half_open
    return Event(ts, NETWORK_SESSIONS, fields)


def _service_fields(action: str, server: bytes, port: int, direction: str) -> dict[str, Any]:
    """The fields every ``network_sessions`` event has: the service and the direction."""
    return {
        "event.dataset": "network.sessions",
        "event.action": action,
        "destination.ip": ip_text(server),
        "destination.port": port,
        "network.type": "ipv4" if len(server) == 4 else "ipv6",
        "network.transport": "tcp",
        "network.iana_number": PROTO_TCP,
        "network.direction": direction,
    }
