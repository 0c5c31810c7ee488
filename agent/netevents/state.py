"""Traffic state of the packet path: per-second aggregates, flows, connections and budgets.

This is the one place the per-packet analyzers (:mod:`agent.netevents.analyzers`) and the bulk
counters (:mod:`agent.netevents.bulk`) keep what they learn, through a small public API with
named fields — no positional slots, no reaching into the processor:

* :class:`~agent.netevents.entries.Aggregate` — one destination's counters for the current
  second (packets, bytes, SYN, SYN-ACK, RST, ICMP echo, a distinct-sources bitmap), keyed
  ``(address, port, protocol)``;
* :class:`~agent.netevents.entries.Flow` — one source → destination (protocol) flow of the
  current flow interval;
* :class:`~agent.netevents.entries.Counts` — the ordinary segments of one TCP connection in
  the current second (folded into its flow and aggregate when the second ends);
* :attr:`TrafficState.connections` — the TCP connections seen (SYN-ACK or counted segment);
* :class:`~agent.netevents.budgets.Budgets` — how many events may still be made this second;
* :class:`TrafficState` — the tables, their bounds (what does not fit is counted in
  ``stats.table_overflows``), the per-second roll and the end-of-interval summaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Final

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.layers import PROTO_TCP
from agent.netevents import records
from agent.netevents.budgets import Budgets
from agent.netevents.direction import Direction
from agent.netevents.entries import Aggregate, Counts, Flow
from agent.netevents.summaries import ProcessorStats, aggregate_events, flow_events
from agent.threatintel.feeds import IntelSet

AggregateKey = tuple[bytes, int, int]
"""(destination address, TCP port — 0 for UDP and ICMP, protocol)."""
FlowKey = tuple[bytes, bytes, int]
"""(source address, destination address, protocol)."""
ALL_PORTS: Final = -1
"""Port of the per-address TCP aggregate: every SYN toward the address, whatever its port (a
flood to random ports has no busy service, only a busy host)."""


IntelSource = Callable[[], IntelSet | None]
SecondListener = Callable[[Mapping[bytes, Counts], int], list[Event]]
"""Called when a second ends with that second's ordinary segments per connection (the keys of
:attr:`TrafficState.segments`, as sent) and the second; returns events."""


class TrafficState:
    """The tables every analyzer shares, bounded, with their per-second and per-interval ends."""

    def __init__(self, settings: NetworkSection, stats: ProcessorStats, direction: Direction,
                 intel: IntelSource | None = None) -> None:
        self.settings = settings
        self.stats = stats
        self.direction = direction
        self.budgets = Budgets(settings, stats)
        self.max_keys = settings.max_tracked_keys
        self.max_flow_starts = settings.max_new_flows_per_destination
        self.aggregates: dict[AggregateKey, Aggregate] = {}
        self.flows: dict[FlowKey, Flow] = {}
        self.segments: dict[bytes, Counts] = {}
        """Ordinary segments of this second per connection (the 12 address + port bytes)."""
        self.connections: dict[bytes, int] = {}
        """TCP connections seen (addresses then ports, as first sent) → the second they were
        last active; bounded by ``max_tracked_keys``, aged when a second ends."""
        self._known: dict[bytes, bytes] = {}
        """Both directions' keys of every entry of :attr:`connections` → that entry's key (one
        lookup a packet, and no key reversal when a second's active connections are marked)."""
        self.flow_starts: dict[bytes, int] = {}
        self._intel = intel
        self.second = -1
        self.next_second = -math.inf
        self.flow_deadline = -math.inf
        self.flow_interval = settings.flow_interval_seconds
        self._second_listeners: list[SecondListener] = []

    def on_second_end(self, listener: SecondListener) -> None:
        """Have ``listener`` read each second's per-connection segment counts before they
        are folded into the flows (whichever path — bulk or per packet — counted them)."""
        self._second_listeners.append(listener)

    # ------------------------------------------------------------------ tables

    def aggregate(self, key: AggregateKey) -> Aggregate | None:
        """The key's aggregate, created if there is room (``None``, counted, when full)."""
        a = self.aggregates.get(key)
        if a is not None:
            return a
        return self.add_aggregate(key)

    def add_aggregate(self, key: AggregateKey) -> Aggregate | None:
        """:meth:`aggregate` of a key the caller found absent (one dictionary look-up less)."""
        if len(self.aggregates) >= self.max_keys:
            self.stats.table_overflows["aggregates"] += 1
            return None
        a = self.aggregates[key] = Aggregate()
        return a

    def count_flow(self, out: list[Event], ts: float, key: FlowKey, wire: int) -> None:
        """One packet of the flow ``key``."""
        flow = self.flows.get(key)
        if flow is None:
            self.new_flow(out, ts, key, wire)
        else:
            flow.packets += 1
            flow.bytes += wire
            flow.last = ts

    def new_flows_spent(self, dst: bytes) -> bool:
        """Whether ``dst`` took every new flow it may this second."""
        return self.flow_starts.get(dst, 0) >= self.max_flow_starts

    def new_flow(self, out: list[Event], ts: float, key: FlowKey, wire: int,
                 packets: int = 1) -> None:
        src, dst, proto = key
        started = self.flow_starts.get(dst, 0)
        if started >= self.max_flow_starts or len(self.flows) >= self.settings.max_flows:
            # A spoofed-source flood must not fill the flow table: its packets are measured
            # by the per-destination aggregates instead.
            table = "flows" if started < self.max_flow_starts else "flows_per_destination"
            self.stats.table_overflows[table] += packets
            self.stats.add_traffic(records.transport_name(proto), "unknown", packets, wire)
            return
        if started or len(self.flow_starts) < self.max_keys:
            self.flow_starts[dst] = started + 1
        self.flows[key] = Flow(packets, wire, ts, ts)
        intel = self._intel() if self._intel is not None else None
        if intel is None or not len(intel):
            return
        matched, feed = src, intel.match(src)
        if feed is None:
            matched, feed = dst, intel.match(dst)
        if feed is not None:
            self.stats.events["threat_intel"] += 1
            out.append(records.intel_event(
                ts, src, dst, proto, matched, feed, self.direction.of(src, dst)
            ))

    def connection_known(self, key: bytes) -> bool:
        """Whether the TCP connection (addresses then ports, as sent; either direction) was
        seen with a SYN-ACK or a counted segment."""
        return key in self._known

    def remember_connection(self, key: bytes) -> None:
        """Add a connection (no-op when known either way). A full table refuses it (counted):
        entries are only dropped when a second ends, oldest first, so what is known stays the
        same throughout a second whichever path counts its segments."""
        known = self._known
        if key in known:
            return
        if len(self.connections) >= self.max_keys:
            self.stats.table_overflows["connections"] += 1
            return
        self.connections[key] = self.second
        known[key] = key
        if len(key) == 12:  # _reverse(), inline for IPv4: a new connection on the hot path
            known[key[4:8] + key[:4] + key[10:] + key[8:10]] = key
        else:
            known[_reverse(key)] = key

    def _age_connections(self, active: dict[bytes, Counts]) -> None:
        """Connections with segments this second are marked active now; when the table is
        three-quarters full the least recently active go, down to half. (Order of the table
        is the order connections were learnt, the same whichever path counted segments.)"""
        connections = self.connections
        second = self.second
        known = self._known
        for key in active:
            entry = known.get(key)
            if entry is not None:
                connections[entry] = second
        limit = self.max_keys
        if len(connections) > limit * 3 // 4:
            ranked = sorted(connections.items(), key=_LAST_ACTIVE)
            for key, _ in ranked[:len(connections) - limit // 2]:
                del connections[key]
                known.pop(key, None)
                known.pop(_reverse(key), None)

    # ------------------------------------------------------------------ time

    def roll(self, ts: float) -> list[Event]:
        """``ts`` opens a new second: the past second's aggregates (and, at the end of a flow
        interval, the flows) become events; the per-second budgets start again."""
        out: list[Event] = []
        if self.second >= 0:
            out = self._fold_segments(self.second + 0.999999)
            out.extend(self._flush_aggregates(self.second + 0.999999))
        self.budgets.reset()
        self.flow_starts = {}
        self.second = int(ts)
        self.next_second = self.second + 1
        if ts >= self.flow_deadline:
            if self.flow_deadline > -math.inf:
                out.extend(self._flush_flows(self.flow_deadline - 1e-6))
            interval = self.flow_interval
            self.flow_deadline = (ts // interval + 1) * interval
        return out

    def flush(self) -> list[Event]:
        """End of input: emit the open second's aggregates and the open flow interval."""
        if self.second < 0:
            return []
        end = self.second + 0.999999
        out = self._fold_segments(end)
        out.extend(self._flush_aggregates(end))
        out.extend(self._flush_flows(end))
        self.second = -1
        self.next_second = -math.inf
        self.flow_deadline = -math.inf
        return out

    def _fold_segments(self, ts: float) -> list[Event]:
        """Add the second's per-connection segment counts to the flows and aggregates."""
        segments, self.segments = self.segments, {}
        self._age_connections(segments)
        out: list[Event] = []
        for listener in self._second_listeners:
            out.extend(listener(segments, self.second))
        flows, agg = self.flows, self.aggregates
        # In key order: the bulk and per-packet paths insert connections in different orders,
        # and which of them may still start a flow (max_new_flows_per_destination) must not
        # depend on that.
        for key in sorted(segments):
            counts = segments[key]
            src, dst = key[:4], key[4:8]
            fkey = (src, dst, PROTO_TCP)
            flow = flows.get(fkey)
            if flow is None:
                self.new_flow(out, ts, fkey, counts.bytes, counts.packets)
            else:
                flow.packets += counts.packets
                flow.bytes += counts.bytes
                flow.last = ts
            # Only destinations that saw SYNs, UDP or ICMP this second have an aggregate; data
            # segments complete their counts (the SYN ratio) without creating one per client.
            a = agg.get((dst, (key[10] << 8) | key[11], PROTO_TCP))
            if a is not None:
                a.packets += counts.packets
                a.bytes += counts.bytes
            h = agg.get((dst, ALL_PORTS, PROTO_TCP))
            if h is not None:
                h.packets += counts.packets
                h.bytes += counts.bytes
        return out

    def _flush_aggregates(self, ts: float) -> list[Event]:
        agg, self.aggregates = self.aggregates, {}
        return aggregate_events(agg, self.settings, self.direction, self.stats, ts)

    def _flush_flows(self, ts: float) -> list[Event]:
        flows, self.flows = self.flows, {}
        return flow_events(flows, self.settings, self.direction, self.stats, ts)


def _reverse(key: bytes) -> bytes:
    """The connection key of the other direction (addresses and ports swapped)."""
    half = (len(key) - 4) // 2
    return key[half:2 * half] + key[:half] + key[2 * half + 2:] + key[2 * half:2 * half + 2]


_LAST_ACTIVE: Final = itemgetter(1)
"""Sort key of a connection entry: the second it was last active (a C call, not a Python one:
the table holds up to ``max_tracked_keys`` entries)."""


__all__ = ["ALL_PORTS", "Aggregate", "Counts", "Flow", "TrafficState"]
