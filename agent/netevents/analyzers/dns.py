"""DNS on ``network.dns_ports``: UDP datagrams, and the messages a TCP segment starts with.

Every message with a whole header counts (queries; answers by rcode), and within the client's
budget becomes a ``dns`` event. Over TCP (RFC 7766: each message after a 2-byte length;
pipelined queries share a segment) up to :data:`MAX_DNS_PER_SEGMENT` messages a segment starts
with are read. The stream is not reassembled: a segment in the middle of a long message (a
zone transfer's answer) does not parse and is passed over without an error; the question, all
rules read, is at a message's start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from agent.events import Event
from agent.netdecode import dns as dnsparse
from agent.netdecode.columns import PacketColumns
from agent.netdecode.layers import PROTO_TCP, PROTO_UDP
from agent.netevents import records
from agent.netevents.analyzers.base import DNS_FROM_CLIENT, DNS_TO_CLIENT, Analyzer, Packet
from agent.netevents.state import TrafficState
from agent.netevents.summaries import DNS_RCODE_LABEL

MAX_DNS_PER_SEGMENT: Final = 64
"""Pipelined DNS messages read from one TCP segment at most (the smallest fit ~100 in 1500 B)."""


class DnsAnalyzer(Analyzer):
    name: ClassVar[str] = "dns"
    transports: ClassVar[tuple[int, ...]] = (PROTO_UDP, PROTO_TCP)

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.dns_ports = frozenset(state.settings.dns_ports)
        mask = np.zeros(65536, dtype=np.bool_)
        mask[sorted(self.dns_ports)] = True
        self.port_mask: npt.NDArray[np.bool_] = mask
        self._max_per_client = state.settings.max_dns_events_per_client
        """The ports as a 64k table (the bulk counters' classification)."""

    def ports(self) -> Iterable[int]:
        return self.dns_ports

    bulk_kinds: ClassVar[tuple[int, ...]] = (DNS_FROM_CLIENT, DNS_TO_CLIENT)

    def count_bulk(self, cols: PacketColumns, rows: npt.NDArray[np.intp]) -> None:
        """What :meth:`_datagram` counts for count-only DNS datagrams ``rows`` (Ethernet/IPv4
        without options: the DNS header starts at byte 42)."""
        stats = self.state.stats
        head = cols.head[rows]
        total = (head[:, 16].astype(np.int64) << 8) | head[:, 17]
        caplen = cols.caplen[rows]
        end = np.where(total == 0, caplen, np.minimum(14 + total, caplen))
        whole = end >= 42 + 12
        response = whole & (head[:, 44] >= 0x80)
        stats.dns_queries += int(np.count_nonzero(whole)) - int(np.count_nonzero(response))
        codes = np.bincount(head[response, 45] & 0x0F, minlength=16)
        for code in np.flatnonzero(codes).tolist():
            stats.dns_responses[DNS_RCODE_LABEL[code]] += int(codes[code])

    def packet(self, out: list[Event], pkt: Packet) -> None:
        if pkt.proto == PROTO_UDP:
            self._datagram(out, pkt)
        elif pkt.end > pkt.l4:
            self._segment(out, pkt)

    def _client(self, pkt: Packet) -> bytes:
        return pkt.dst if pkt.sport in self.dns_ports else pkt.src

    def _datagram(self, out: list[Event], pkt: Packet) -> None:
        state, data, l4 = self.state, pkt.data, pkt.l4
        if pkt.end - l4 >= 12:
            if data[l4 + 2] & 0x80:
                state.stats.dns_responses[DNS_RCODE_LABEL[data[l4 + 3] & 0x0F]] += 1
            else:
                state.stats.dns_queries += 1
        client = pkt.dst if pkt.sport in self.dns_ports else pkt.src  # self._client(), inline
        if not state.budgets.admit_aux(b"dns" + client, self._max_per_client):
            return
        msg = dnsparse.parse(data, l4, pkt.end)
        if isinstance(msg, str):
            state.stats.errors[msg] += 1
            return
        state.stats.events["dns"] += 1
        out.append(records.dns_event(
            pkt.ts, pkt.family, pkt.src, pkt.dst, pkt.sport, pkt.dport, msg,
            state.direction.of(pkt.src, pkt.dst), pkt.wire, pkt.interface,
        ))

    def _segment(self, out: list[Event], pkt: Packet) -> None:
        if pkt.flags & 0x02:  # SYN: TCP Fast Open data is not read
            return
        state, data, end = self.state, pkt.data, pkt.end
        client = self._client(pkt)
        start = pkt.l4
        for _ in range(MAX_DNS_PER_SEGMENT):
            if end - start < 14:
                return
            length = (data[start] << 8) | data[start + 1]
            if length < 12:
                return
            msg = dnsparse.parse(data, start + 2, min(end, start + 2 + length))
            if isinstance(msg, str) or msg.question_count != 1 or msg.opcode > 6:
                return
            if msg.is_response:
                state.stats.dns_responses[DNS_RCODE_LABEL[msg.rcode & 0x0F]] += 1
            else:
                state.stats.dns_queries += 1
            if state.budgets.admit_aux(b"dns" + client, self._max_per_client):
                state.stats.events["dns"] += 1
                out.append(records.dns_event(
                    pkt.ts, pkt.family, pkt.src, pkt.dst, pkt.sport, pkt.dport, msg,
                    state.direction.of(pkt.src, pkt.dst), pkt.wire, pkt.interface, PROTO_TCP,
                ))
            start += 2 + length
