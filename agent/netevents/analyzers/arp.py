"""ARP: the IP → MAC binding table (:class:`~agent.netevents.arp.ArpTracker`) and an ``arp``
event per packet within the sender's budget (twice the budget when a binding changed)."""

from __future__ import annotations

from typing import ClassVar

from agent.events import Event
from agent.netevents import records
from agent.netevents.analyzers.base import PROTO_ARP, Analyzer, Packet
from agent.netevents.arp import ArpTracker, parse_arp
from agent.netevents.state import TrafficState


class ArpAnalyzer(Analyzer):
    name: ClassVar[str] = "arp"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_ARP,)

    def __init__(self, state: TrafficState, tracker: ArpTracker | None = None) -> None:
        super().__init__(state)
        self.tracker = ArpTracker(state.settings.gateways) if tracker is None else tracker

    def packet(self, out: list[Event], pkt: Packet) -> None:
        state = self.state
        state.stats.add_traffic("arp", "none", 1, pkt.wire)
        arp = parse_arp(pkt.data, pkt.l4)
        if arp is None:
            state.stats.errors["arp_unsupported"] += 1
            return
        previous = self.tracker.observe(arp.sender_ip, arp.sender_mac, pkt.ts)
        limit = self.settings.max_arp_events_per_mac
        if not state.budgets.admit_aux(b"arp" + arp.sender_mac,
                                       limit if previous is None else limit * 2):
            return
        state.stats.events["arp"] += 1
        out.append(records.arp_event(
            pkt.ts, pkt.src, pkt.dst, arp.opcode, arp.sender_mac, arp.sender_ip,
            arp.target_mac, arp.target_ip, previous, arp.sender_ip in self.tracker.gateways,
            pkt.interface,
        ))
