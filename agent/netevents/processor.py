"""Decoded packets → the events network rules read, at a cost bounded whatever the packet rate.

One :class:`PacketProcessor` is shared by live capture and ``vedette replay``: both hand it
:class:`~agent.netdecode.columns.PacketColumns` batches (a ring block, a stretch of a capture
file) and forward what it returns to the detection engine, so a pcap fixture exercises
exactly the live path. Packet timestamps are the clock: when a packet belongs to a new second
the previous second's aggregates are emitted; live capture also calls :meth:`advance` with
wall time so quiet links still flush.

What a packet does is defined per packet (:meth:`PacketProcessor._packet`: one decode to a
tuple, one flow-table update, one per-destination aggregate update, maybe an event), but most
packets only count, and those are counted for the whole batch with numpy
(:mod:`agent.netevents.bulk`): ordinary segments of established TCP connections, and floods
whose event budget for the second is spent. The result is the same, event for event and
counter for counter (``tests/network/test_bulk.py``). Events are produced for:

* **control packets** (``vedette/network_packet``): TCP SYN, SYN-ACK, RST and any segment
  without ACK (FIN/NULL/Xmas probes), ICMP echo/timestamp requests and unreachables (with the
  quoted original's destination port, which is how UDP scans show up). One probe becomes one
  event immediately — within the batch it arrived in;
* **DNS** questions and answers (``vedette/dns``: UDP datagrams, and TCP segments on a DNS
  port that start a message) and **ARP** packets (``vedette/arp``);
* **per-second aggregates** per destination (``vedette/network_traffic``): packets, bytes, SYN,
  SYN-ACK, RST, ICMP echo counts and an estimate of distinct sources — what flood rules sum;
* **flow summaries** per interval (``vedette/network_flow``) and threat-intel matches on new flows.

Budgets keep the per-packet event rate bounded: per destination (address, port), per source,
per DNS client, per ARP sender and overall, each per second. A flood therefore costs the engine
~``max_events_per_destination`` events plus one aggregate per second, while a scan (many
destinations) still delivers each probe. Every table is bounded by ``max_tracked_keys``/
``max_flows``; what does not fit is counted, never silently lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import Frame, PacketColumns
from agent.netdecode.layers import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, decode
from agent.netevents import bulk as bulk_ops
from agent.netevents import protocols, records
from agent.netevents.arp import ArpTracker
from agent.netevents.direction import Direction
from agent.netevents.summaries import (
    BITMAP_SLOTS,
    TCP_CONTROL_KIND,
    ProcessorStats,
    aggregate_events,
    flow_events,
)
from agent.threatintel.feeds import IntelSet

IntelSource = Callable[[], IntelSet | None]


class PacketProcessor:
    def __init__(
        self,
        settings: NetworkSection,
        intel: IntelSource | None = None,
        gateways: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.direction = Direction(settings.local_networks)
        self.arp = ArpTracker([*settings.gateways, *gateways])
        self.stats = ProcessorStats()
        self._intel = intel
        self._dns_ports = frozenset(settings.dns_ports)
        # The same set as a 64k table: indexed per packet (bytes) and per batch (numpy).
        self._is_dns_port = bytes(1 if port in self._dns_ports else 0 for port in range(65536))
        self._dns_port_mask = np.frombuffer(self._is_dns_port, dtype=np.uint8).astype(np.bool_)
        self._max_dst = settings.max_events_per_destination
        self._max_src = settings.max_events_per_source
        self._max_total = settings.max_events_per_second
        self._max_keys = settings.max_tracked_keys
        self._second = -1
        self._next_second = -math.inf
        self._flow_deadline = -math.inf
        self._flow_interval = settings.flow_interval_seconds
        self._agg: dict[tuple[bytes, int, int], list[Any]] = {}
        self._segments: dict[bytes, list[int]] = {}
        self._flows: dict[tuple[bytes, bytes, int], list[Any]] = {}
        self._dst_count: dict[tuple[bytes, int], int] = {}
        self._src_count: dict[bytes, int] = {}
        self._aux_count: dict[bytes, int] = {}
        self._flow_starts: dict[bytes, int] = {}
        self._max_flow_starts = settings.max_new_flows_per_destination
        self._emitted = 0

    # ------------------------------------------------------------------ hot path

    def process(self, batch: Iterable[Frame], interface: str | None = None) -> list[Event]:
        """Decode a batch of frame tuples; returns the events it produced (packet-time order)."""
        frames = batch if isinstance(batch, list) else list(batch)
        if not frames:
            return []
        return self.process_columns(PacketColumns.from_frames(frames), interface)

    def process_columns(
        self, cols: PacketColumns, interface: str | None = None, bulk: bool = True
    ) -> list[Event]:
        """Decode a columnar batch; returns the events it produced (in packet-time order).

        Ordinary segments of established TCP connections (Ethernet/IPv4, no SYN/RST) are counted
        per connection in bulk; so are busy groups whose event budget for the second is spent
        (:class:`~agent.netevents.bulk.CountOnly`: SYN floods, UDP, DNS and ICMP floods); every
        other packet takes :meth:`_packet` in order. ``bulk=False`` sends every packet through
        :meth:`_packet`: the reference the tests hold the bulk path equal to.
        """
        out: list[Event] = []
        n = len(cols)
        if not n:
            return out
        self.stats.packets += n
        self.stats.bytes += int(cols.wire.sum())
        buffer = cols.buffer
        kinds = (bulk_ops.classify(cols, self._dns_port_mask)
                 if bulk and n >= bulk_ops.BULK_MIN_PACKETS else None)
        max_total = self._max_total
        for first, last, rolls in bulk_ops.seconds(cols.timestamps, self._next_second):
            if rolls:
                out.extend(self._roll(float(cols.timestamps[first])))
            if kinds is None:
                idx = np.arange(first, last)
            else:
                idx = self._bulk_segments(cols, kinds, first, last)
            counting = bulk_ops.CountOnly(self, cols, kinds, first, last)
            skip, watch = counting.skip, counting.watch
            starts = cols.offsets[idx]
            for rel, ts, linktype, start, stop, wire in zip(
                (idx - first).tolist(), cols.timestamps[idx].tolist(),
                cols.linktypes[idx].tolist(), starts.tolist(),
                (starts + cols.caplen[idx]).tolist(), cols.wire[idx].tolist(), strict=True,
            ):
                skipped = skip[rel]
                if skipped:
                    if skipped == 2:
                        counting.touch(rel, ts)
                    if self._emitted >= max_total:
                        counting.late(rel)
                    continue
                self._packet(out, ts, linktype, buffer[start:stop], wire, interface)
                if watch[rel]:
                    counting.check(rel)
            counting.apply()
        return out

    def _bulk_segments(
        self, cols: PacketColumns, kinds: bulk_ops.Kinds, start: int, stop: int
    ) -> npt.NDArray[np.intp]:
        """Count the ordinary segments of ``start:stop``; the indices left for :meth:`_packet`.

        When the per-connection table cannot take every new connection of the range, nothing is
        counted in bulk and every packet of the range goes through :meth:`_packet` in order
        (that is where overflowing segments fall back to the flow and aggregate tables).
        """
        ordinary = kinds.ordinary[start:stop]
        idx = np.flatnonzero(ordinary)
        if len(idx) and bulk_ops.count_segments(
                self._segments, cols, idx + start, self._max_keys):
            return np.flatnonzero(~ordinary) + start
        return np.arange(start, stop)

    def _packet(
        self, out: list[Event], ts: float, linktype: int, data: bytes, wire: int,
        interface: str | None,
    ) -> None:
        """Everything one packet does (its second already rolled)."""
        if (linktype == 1 and len(data) >= 54 and data[23] == PROTO_TCP
                and data[14] == 0x45 and data[12] == 8 and data[13] == 0
                and not (data[20] & 0x1F) | data[21]):
            # Fast path, most of the traffic: Ethernet, IPv4 without options, unfragmented,
            # TCP. Same result as decode(); everything else takes the general path.
            flags = data[47]
            sport = (data[34] << 8) | data[35]
            dport = (data[36] << 8) | data[37]
            dns_port = self._is_dns_port[sport] or self._is_dns_port[dport]
            if flags & 0x16 == 0x10 and not dns_port:
                # An ordinary segment (ACK, no SYN/RST) only counts: per connection (addresses
                # + ports, one slice), folded into flows and aggregates when the second ends.
                ckey = data[26:38]
                seg = self._segments.get(ckey)
                if seg is not None:
                    seg[0] += 1
                    seg[1] += wire
                    return
                if len(self._segments) < self._max_keys:
                    self._segments[ckey] = [1, wire]
                    return
            if dns_port:  # DNS over TCP reads the payload: decode() finds where it is
                r = decode(data, linktype)
                if isinstance(r, str):
                    self.stats.errors[r] += 1
                    return
                family, src, dst, proto, sport, dport, flags, l4, end = r
            else:
                family, proto, l4, end = 4, PROTO_TCP, 0, 0
                src = data[26:30]
                dst = data[30:34]
        else:
            r = decode(data, linktype)
            if isinstance(r, str):
                self.stats.errors[r] += 1
                return
            family, src, dst, proto, sport, dport, flags, l4, end = r
        if family == 0:
            protocols.arp(self, out, ts, data, src, dst, l4, wire, interface)
            return
        fkey = (src, dst, proto)
        flow = self._flows.get(fkey)
        if flow is None:
            self._new_flow(out, ts, fkey, wire)
        else:
            flow[0] += 1
            flow[1] += wire
            flow[3] = ts
        agg = self._agg
        if proto == PROTO_TCP:
            akey = (dst, dport, PROTO_TCP)
            a = agg.get(akey) or self._new_aggregate(akey)
            if a is not None:
                a[0] += 1
                a[1] += wire
            if end > l4 and (sport in self._dns_ports or dport in self._dns_ports):
                protocols.dns_tcp(self, out, ts, family, src, dst, sport, dport, flags, data,
                                  l4, end, wire, interface)
            if (flags & 0x16) == 0x10:  # ACK without SYN/RST: ordinary segment
                return
            self.stats.tcp_control[TCP_CONTROL_KIND[flags]] += 1
            if flags & 0x12 == 0x02:  # SYN (with the aggregate table full: not counted)
                if a is not None:
                    a[2] += 1
                    bitmap = a[6] or self._bitmap(a)
                    bitmap[hash(src) & 4095] = 1
            elif flags & 0x16 != 0:  # SYN-ACK or RST: counted on the sender's service
                skey = (src, sport, PROTO_TCP)
                s = agg.get(skey) or self._new_aggregate(skey)
                if s is not None:
                    s[3 if flags & 0x02 else 4] += 1
            if self._admit(src, dst, dport):
                self.stats.events["packet"] += 1
                out.append(records.tcp_packet(
                    ts, family, src, dst, sport, dport, flags,
                    self.direction.of(src, dst), wire, interface,
                ))
        elif proto == PROTO_UDP:
            akey = (dst, 0, PROTO_UDP)
            a = agg.get(akey) or self._new_aggregate(akey)
            if a is not None:
                a[0] += 1
                a[1] += wire
                bitmap = a[6] or self._bitmap(a)
                bitmap[hash(src) & 4095] = 1
            if sport in self._dns_ports or dport in self._dns_ports:
                protocols.dns(self, out, ts, family, src, dst, sport, dport, data, l4, end,
                              wire, interface)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            protocols.icmp(self, out, ts, family, src, dst, proto, sport, dport, data, l4, end,
                           wire, interface)

    def _admit(self, src: bytes, dst: bytes, port: int) -> bool:
        """Spend one unit of the per-destination, per-source and global budgets."""
        if self._emitted >= self._max_total:
            self.stats.suppressed += 1
            self.stats.over_global_budget += 1
            return False
        dkey = (dst, port)
        d = self._dst_count.get(dkey, 0)
        s = self._src_count.get(src, 0)
        if d >= self._max_dst or s >= self._max_src:
            self.stats.suppressed += 1
            return False
        if d or len(self._dst_count) < self._max_keys:
            self._dst_count[dkey] = d + 1
        if s or len(self._src_count) < self._max_keys:
            self._src_count[src] = s + 1
        self._emitted += 1
        return True

    def _admit_aux(self, key: bytes, limit: int) -> bool:
        """Budget of DNS clients and ARP senders (their own table, same global cap)."""
        if self._emitted >= self._max_total:
            self.stats.suppressed += 1
            self.stats.over_global_budget += 1
            return False
        c = self._aux_count.get(key, 0)
        if c >= limit:
            self.stats.suppressed += 1
            return False
        if c or len(self._aux_count) < self._max_keys:
            self._aux_count[key] = c + 1
        self._emitted += 1
        return True

    def _new_aggregate(self, key: tuple[bytes, int, int]) -> list[Any] | None:
        if len(self._agg) >= self._max_keys:
            self.stats.table_overflows["aggregates"] += 1
            return None
        entry: list[Any] = [0, 0, 0, 0, 0, 0, None]
        self._agg[key] = entry
        return entry

    @staticmethod
    def _bitmap(entry: list[Any]) -> bytearray:
        entry[6] = bytearray(BITMAP_SLOTS)
        bitmap: bytearray = entry[6]
        return bitmap

    def _new_flow(
        self, out: list[Event], ts: float, key: tuple[bytes, bytes, int], wire: int,
        packets: int = 1,
    ) -> None:
        src, dst, proto = key
        started = self._flow_starts.get(dst, 0)
        if started >= self._max_flow_starts or len(self._flows) >= self.settings.max_flows:
            # A spoofed-source flood must not fill the flow table: its packets are measured
            # by the per-destination aggregates instead.
            table = "flows" if started < self._max_flow_starts else "flows_per_destination"
            self.stats.table_overflows[table] += packets
            self.stats.add_traffic(records.transport_name(proto), "unknown", packets, wire)
            return
        if started or len(self._flow_starts) < self._max_keys:
            self._flow_starts[dst] = started + 1
        self._flows[key] = [packets, wire, ts, ts]
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

    # ------------------------------------------------------------------ time

    def advance(self, now: float) -> list[Event]:
        """Emit what intervals ended before ``now`` (wall time in live capture)."""
        if now >= self._next_second and self._second >= 0:
            return self._roll(now)
        return []

    def flush(self) -> list[Event]:
        """End of input: emit the open second's aggregates and the open flow interval."""
        if self._second < 0:
            return []
        end = self._second + 0.999999
        out = self._fold_segments(end)
        out.extend(self._flush_aggregates(end))
        out.extend(self._flush_flows(end))
        self._second = -1
        self._next_second = -math.inf
        self._flow_deadline = -math.inf
        return out

    def _roll(self, ts: float) -> list[Event]:
        out: list[Event] = []
        if self._second >= 0:
            out = self._fold_segments(self._second + 0.999999)
            out.extend(self._flush_aggregates(self._second + 0.999999))
        self._dst_count = {}
        self._src_count = {}
        self._aux_count = {}
        self._flow_starts = {}
        self._emitted = 0
        self._second = int(ts)
        self._next_second = self._second + 1
        if ts >= self._flow_deadline:
            if self._flow_deadline > -math.inf:
                out.extend(self._flush_flows(self._flow_deadline - 1e-6))
            interval = self._flow_interval
            self._flow_deadline = (ts // interval + 1) * interval
        return out

    def _fold_segments(self, ts: float) -> list[Event]:
        """Add the second's per-connection segment counts to the flows and aggregates."""
        segments, self._segments = self._segments, {}
        out: list[Event] = []
        flows, agg = self._flows, self._agg
        for key, (packets, nbytes) in segments.items():
            src, dst = key[:4], key[4:8]
            fkey = (src, dst, PROTO_TCP)
            flow = flows.get(fkey)
            if flow is None:
                self._new_flow(out, ts, fkey, nbytes, packets)
            else:
                flow[0] += packets
                flow[1] += nbytes
                flow[3] = ts
            # Only destinations that saw SYNs, UDP or ICMP this second have an aggregate; data
            # segments complete their counts (the SYN ratio) without creating one per client.
            a = agg.get((dst, (key[10] << 8) | key[11], PROTO_TCP))
            if a is not None:
                a[0] += packets
                a[1] += nbytes
        return out

    def _flush_aggregates(self, ts: float) -> list[Event]:
        agg, self._agg = self._agg, {}
        return aggregate_events(agg, self.settings, self.direction, self.stats, ts)

    def _flush_flows(self, ts: float) -> list[Event]:
        flows, self._flows = self._flows, {}
        return flow_events(flows, self.settings, self.direction, self.stats, ts)
