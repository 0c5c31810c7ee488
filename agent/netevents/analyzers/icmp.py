"""ICMP and ICMPv6: per-destination aggregates (packets, echo requests, distinct probing
sources) and ``network_packet`` events of probes (echo, timestamp, address mask; ICMPv6 echo)
and unreachables (with the quoted original's destination: how UDP scans show up)."""

from __future__ import annotations

from typing import ClassVar, Final

from agent.events import Event
from agent.netdecode.layers import PROTO_ICMP, PROTO_ICMPV6
from agent.netdecode.layers import quoted_transport as _quoted
from agent.netevents import fingerprint, link, records
from agent.netevents.analyzers.base import Analyzer, Packet

ICMP4_PROBES: Final = frozenset((8, 13, 17))
"""ICMP types that are probes (echo, timestamp, address mask)."""
ICMP6_PROBES: Final = frozenset((128,))


class IcmpAnalyzer(Analyzer):
    name: ClassVar[str] = "icmp"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_ICMP, PROTO_ICMPV6)

    def packet(self, out: list[Event], pkt: Packet) -> None:
        state = self.state
        proto, icmp_type = pkt.proto, pkt.sport
        a = state.aggregate((pkt.dst, 0, proto))
        probe = icmp_type in (ICMP4_PROBES if proto == PROTO_ICMP else ICMP6_PROBES)
        if a is not None:
            a.packets += 1
            a.bytes += pkt.wire
            if probe:
                a.echo += 1
                a.add_source(pkt.src)
        unreachable = icmp_type == (3 if proto == PROTO_ICMP else 1)
        if not (probe or unreachable) or not state.budgets.admit(pkt.src, pkt.dst,
                                                                 -icmp_type - 1):
            return
        quoted = _quoted(pkt.data, pkt.l4 + 4, pkt.end, pkt.family) if unreachable else None
        state.stats.events["packet"] += 1
        out.append(records.icmp_packet(
            pkt.ts, pkt.family, pkt.src, pkt.dst, proto, icmp_type, pkt.dport, quoted,
            state.direction.of(pkt.src, pkt.dst), pkt.wire, pkt.interface,
            records.packet_evidence(pkt.fragments, pkt.v6_headers, False),
            {**(link.mac_fields(pkt) or {}), **(fingerprint.icmp_fields(pkt) or {})},
        ))
