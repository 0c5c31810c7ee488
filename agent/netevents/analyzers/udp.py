"""UDP: the per-destination aggregate (all ports: packets, bytes, distinct sources) floods are
measured by. Applications on UDP (DNS) are port analyzers of their own."""

from __future__ import annotations

from typing import ClassVar

from agent.events import Event
from agent.netdecode.layers import PROTO_UDP
from agent.netevents.analyzers.base import Analyzer, Packet


class UdpAnalyzer(Analyzer):
    name: ClassVar[str] = "udp"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_UDP,)

    def packet(self, out: list[Event], pkt: Packet) -> None:
        key = (pkt.dst, 0, PROTO_UDP)
        a = self.state.aggregates.get(key) or self.state.add_aggregate(key)
        if a is not None:
            a.packets += 1
            a.bytes += pkt.wire
            src = pkt.src
            if a.first_source != src:  # a.add_source(src) when it can change anything
                a.add_source(src)
