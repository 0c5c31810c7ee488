"""TCP: per-service aggregates (packets, SYN, SYN-ACK, RST, distinct sources), control-segment
counters and the ``network_packet`` events of control segments.

A control segment is a SYN, a SYN-ACK, an RST or any segment without ACK (FIN/NULL/Xmas
probes); it becomes an event within the budgets. A SYN also opens the destination's
all-ports aggregate (:data:`~agent.netevents.state.ALL_PORTS`), which every later TCP packet
toward it counts in: a flood to random ports has no busy service, only a busy host.

Ordinary segments (ACK without SYN/RST) of known connections only count (per connection, in
bulk when they can; the processor does that before any analyzer). An ordinary segment without
payload of a connection never seen — no SYN-ACK, no earlier segment: what the probes of ACK,
Window and Maimon scans are — is an event too, with ``tcp.connection_state: untracked``, and
counts as ``untracked`` control segment. The connection table
(:meth:`~agent.netevents.state.TrafficState.connection_known`) learns from SYN-ACKs and from
segments, never from SYNs (a spoofed flood must not fill it).
"""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netdecode.layers import PROTO_TCP
from agent.netevents import fingerprint, link, records
from agent.netevents.analyzers.base import REFUSED_SYNACK, Analyzer, Packet
from agent.netevents.arp import ArpTracker
from agent.netevents.decoys import DecoyTracker
from agent.netevents.state import ALL_PORTS, TrafficState
from agent.netevents.summaries import TCP_CONTROL_KIND

_PORTS = struct.Struct("!HH").pack


def connection_key(pkt: Packet) -> bytes:
    return pkt.src + pkt.dst + _PORTS(pkt.sport, pkt.dport)


class TcpAnalyzer(Analyzer):
    name: ClassVar[str] = "tcp"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_TCP,)
    bulk_kinds: ClassVar[tuple[int, ...]] = (REFUSED_SYNACK,)

    def __init__(self, state: TrafficState, arp: ArpTracker | None = None) -> None:
        super().__init__(state)
        self.decoys = DecoyTracker(arp)

    def refused_synack(self, ts: float, key: bytes, wire: int) -> None:
        """A refused SYN-ACK's in-order part: the client port's aggregate (created in packet
        order: the table's bound and its order), the client's all-ports aggregate (if a SYN
        opened it before) and the connection table."""
        state = self.state
        aggregates = state.aggregates
        client = key[4:8]
        akey = (client, (key[10] << 8) | key[11], PROTO_TCP)
        a = aggregates.get(akey) or state.add_aggregate(akey)
        if a is not None:
            a.packets += 1
            a.bytes += wire
        h = aggregates.get((client, ALL_PORTS, PROTO_TCP))
        if h is not None:
            h.packets += 1
            h.bytes += wire
        state.remember_connection(key)

    def count_bulk(self, cols: PacketColumns, rows: npt.NDArray[np.intp]) -> None:
        """Refused SYN-ACKs ``rows`` of one server address and port (its aggregate exists):
        their control-segment counts and the server's SYN-ACK count."""
        state = self.state
        head = cols.head[rows]
        kinds = np.bincount(head[:, 47], minlength=256)
        for flags in np.flatnonzero(kinds).tolist():
            state.stats.tcp_control[TCP_CONTROL_KIND[flags]] += int(kinds[flags])
        server = state.aggregates[(bytes(head[0, 26:30]),
                                   (int(head[0, 34]) << 8) | int(head[0, 35]), PROTO_TCP)]
        server.synack += len(rows)

    def packet(self, out: list[Event], pkt: Packet) -> None:
        state = self.state
        flags = pkt.flags
        aggregates = state.aggregates
        key = (pkt.dst, pkt.dport, PROTO_TCP)
        a = aggregates.get(key) or state.add_aggregate(key)
        if a is not None:
            a.packets += 1
            a.bytes += pkt.wire
        syn = flags & 0x12 == 0x02
        host_key = (pkt.dst, ALL_PORTS, PROTO_TCP)
        h = aggregates.get(host_key)
        if h is None and syn:
            h = state.aggregate(host_key)
        if h is not None:
            h.packets += 1
            h.bytes += pkt.wire
            if syn:
                h.syn += 1
                h.add_source(pkt.src)
        untracked = False
        if (flags & 0x16) == 0x10:  # ACK without SYN/RST: an ordinary segment
            ckey = connection_key(pkt)
            if pkt.end > pkt.l4 or state.connection_known(ckey):
                state.remember_connection(ckey)
                return
            state.remember_connection(ckey)
            state.stats.tcp_control["untracked"] += 1
            untracked = True
        else:
            state.stats.tcp_control[TCP_CONTROL_KIND[flags]] += 1
            if syn:  # SYN (with the aggregate table full: not counted)
                if a is not None:
                    a.syn += 1
                    a.add_source(pkt.src)
            elif flags & 0x16 != 0:  # SYN-ACK or RST: counted on the sender's service
                skey = (pkt.src, pkt.sport, PROTO_TCP)
                s = aggregates.get(skey) or state.add_aggregate(skey)
                if flags & 0x02:  # the connection is learnt even with the table full
                    state.remember_connection(connection_key(pkt))
                if s is not None:
                    if flags & 0x02:
                        s.synack += 1
                    else:
                        s.rst += 1
        if state.budgets.admit(pkt.src, pkt.dst, pkt.dport):
            state.stats.events["packet"] += 1
            direction = state.direction.of(pkt.src, pkt.dst)
            event = records.tcp_packet(
                pkt.ts, pkt.family, pkt.src, pkt.dst, pkt.sport, pkt.dport, flags,
                direction, pkt.wire, pkt.interface,
                records.packet_evidence(pkt.fragments, pkt.v6_headers, untracked),
                {**(link.mac_fields(pkt) or {}), **fingerprint.tcp_fields(pkt)},
            )
            out.append(event)
            self.decoys.packet(out, pkt, direction, event.fields)
