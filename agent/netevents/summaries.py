"""End-of-interval summaries: per-second destination aggregates and per-interval flows.

The :class:`~agent.netevents.processor.PacketProcessor` hands its tables over when a second
(aggregates) or a flow interval ends; these functions pick the busiest entries (bounded), turn
them into events and account protocol/direction traffic for the metrics.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from agent.config import NetworkSection
from agent.events import Event
from agent.netevents import records
from agent.netevents.direction import Direction
from agent.netevents.entries import Aggregate, Flow

_METRIC_PROTOCOLS = frozenset(("tcp", "udp", "icmp", "ipv6-icmp", "fragment"))


def _tcp_control_kind(flags: int) -> str:
    if flags & 0x12 == 0x02:
        return "syn"
    if flags & 0x12 == 0x12:
        return "syn_ack"
    if flags & 0x04:
        return "rst"
    return "no_ack" if not flags & 0x10 else "ack"


TCP_CONTROL_KIND: Final = tuple(_tcp_control_kind(flags) for flags in range(256))
"""TCP flag byte → what a control segment counts as: ``syn`` (SYN without ACK: a connection
attempt), ``syn_ack``, ``rst`` (RST without SYN), ``no_ack`` (none of SYN, RST, ACK: FIN, NULL
and Xmas probes). ``ack`` (an ordinary segment) is never counted."""
DNS_RCODE_LABEL: Final = tuple(
    {0: "noerror", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused"}
    .get(code, "other") for code in range(16)
)
"""DNS rcode → the bounded ``rcode`` label of ``vedette_capture_dns_responses_total``."""


@dataclass
class ProcessorStats:
    """Counters the capture collector turns into metrics and replay prints."""

    packets: int = 0
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    suppressed: int = 0
    over_global_budget: int = 0
    """Of ``suppressed``: dropped because a share of ``max_events_per_second`` was spent
    (detection blind for someone, not thinned)."""
    over_budget_pools: Counter[str] = field(default_factory=Counter)
    """``over_global_budget`` by pool: ``new_sources``, ``known_sources``, ``dns_arp``."""
    table_overflows: Counter[str] = field(default_factory=Counter)
    traffic: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    tcp_control: Counter[str] = field(default_factory=Counter)
    """TCP control segments by :data:`TCP_CONTROL_KIND` (all of them, emitted as events or not)."""
    dns_queries: int = 0
    """Datagrams on a DNS port with a whole DNS header and QR = 0 (within budget or not)."""
    dns_responses: Counter[str] = field(default_factory=Counter)
    """Datagrams on a DNS port with a whole DNS header and QR = 1, by :data:`DNS_RCODE_LABEL`."""
    evasion: Counter[str] = field(default_factory=Counter)
    """Traffic shaped to slip past a sensor: ``fragment_overlap``, ``tiny_fragment`` (a first
    fragment without the whole transport header), ``ipv6_unusual_chain``,
    ``ipv6_chain_too_long``."""
    fragments: Counter[str] = field(default_factory=Counter)
    """What reassembly dropped (:mod:`agent.netdecode.defrag` reasons: timeouts, duplicates,
    overlaps, refusals)."""
    reassembled: int = 0
    """Datagrams rebuilt from fragments."""

    def add_traffic(self, protocol: str, direction: str, packets: int, nbytes: int) -> None:
        if protocol not in _METRIC_PROTOCOLS and protocol != "arp":
            protocol = "other"
        slot = self.traffic.setdefault((protocol, direction), [0, 0])
        slot[0] += packets
        slot[1] += nbytes


def aggregate_events(
    agg: dict[tuple[bytes, int, int], Aggregate],
    settings: NetworkSection,
    direction: Direction,
    stats: ProcessorStats,
    ts: float,
) -> list[Event]:
    """``network_traffic`` events of the busy destinations of one second (largest first)."""
    floor = settings.aggregate_min_packets
    busy = [(k, v) for k, v in agg.items() if v.packets >= floor or v.synack >= floor]
    if any(k[1] < 0 for k, _ in busy):
        busy = _spread_hosts(agg, busy)
    if len(busy) > settings.max_aggregate_events:
        stats.table_overflows["aggregate_events"] += len(busy) - settings.max_aggregate_events
        busy = heapq.nlargest(settings.max_aggregate_events, busy, key=_packets)
    out = [
        records.traffic_event(
            ts, dst, port, proto, counts, counts.source_count(),
            "inbound" if direction.is_local(dst) else "outbound", 1.0,
        )
        for (dst, port, proto), counts in busy
    ]
    stats.events["traffic"] += len(out)
    return out


def _spread_hosts(
    agg: dict[tuple[bytes, int, int], Aggregate],
    busy: list[tuple[tuple[bytes, int, int], Aggregate]],
) -> list[tuple[tuple[bytes, int, int], Aggregate]]:
    """All-ports TCP aggregates (port -1) are kept only where no one service took half of the
    host's SYNs: a flood or scan spread over ports. A busy service (or a flood to one port)
    is already its own aggregate and must not count twice."""
    top: dict[bytes, int] = {}
    for (dst, port, proto), a in agg.items():
        if proto == 6 and port >= 0 and a.syn > top.get(dst, 0):
            top[dst] = a.syn
    return [(k, v) for k, v in busy
            if k[1] >= 0 or top.get(k[0], 0) * 2 < v.syn]


def flow_events(
    flows: dict[tuple[bytes, bytes, int], Flow],
    settings: NetworkSection,
    direction: Direction,
    stats: ProcessorStats,
    ts: float,
) -> list[Event]:
    """Account every flow's traffic; ``network_flow`` summaries of the largest ones."""
    of = direction.of
    add = stats.add_traffic
    name = records.transport_name
    for (src, dst, proto), flow in flows.items():
        add(name(proto), of(src, dst), flow.packets, flow.bytes)
    floor = settings.flow_min_bytes
    chosen = heapq.nlargest(
        settings.max_flow_events,
        (item for item in flows.items() if item[1].bytes >= floor),
        key=lambda item: item[1].bytes,
    )
    out = [
        records.flow_event(ts, src, dst, proto, f.packets, f.bytes, f.first, f.last,
                           of(src, dst))
        for (src, dst, proto), f in chosen
    ]
    stats.events["flow"] += len(out)
    return out


def _packets(item: tuple[tuple[bytes, int, int], Aggregate]) -> int:
    return item[1].packets
