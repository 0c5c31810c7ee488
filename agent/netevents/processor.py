"""Decoded packets → the events network rules read, at a cost bounded whatever the packet rate.

One :class:`PacketProcessor` is shared by live capture and ``vedette replay``: both hand it
:class:`~agent.netdecode.columns.PacketColumns` batches (a ring block, a stretch of a capture
file) and forward what it returns to the detection engine, so a pcap fixture exercises
exactly the live path. Packet timestamps are the clock: when a packet belongs to a new second
the previous second's aggregates are emitted; live capture also calls :meth:`advance` with
wall time so quiet links still flush.

The path is the one Zeek and Suricata use: **decode** (:mod:`agent.netdecode.layers`; IP
fragments reassembled by :class:`~agent.netdecode.defrag.Reassembler`, IPv6 extension headers
walked) → the **traffic state** (:mod:`agent.netevents.state`: flows, connections,
per-destination aggregates, budgets) → the **protocol analyzers** registered by IP protocol or
port (:mod:`agent.netevents.analyzers`) → events. What a packet does is defined per packet
(:meth:`PacketProcessor._packet`), but most packets only count, and those are counted for the
whole batch with numpy (:mod:`agent.netevents.bulk`): ordinary segments of known TCP
connections, and floods whose event budget for the second is spent. The result is the same,
event for event and counter for counter (``tests/network/test_bulk.py``). Events are produced
for:

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

(A little over the project's ~400 lines: :meth:`PacketProcessor._packet` reads plain
Ethernet/IPv4 TCP and UDP inline, the hot path, rather than through :func:`decode`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import Frame, PacketColumns
from agent.netdecode.defrag import EVICTED, OVERLAP, Reassembled, Reassembler
from agent.netdecode.layers import (
    LINKTYPE_RAW,
    PROTO_FRAGMENT,
    PROTO_TCP,
    PROTO_UDP,
    V6_CHAIN_TOO_LONG,
    decode,
    fragment_of,
    ipv6_chain,
    link_payload,
    unusual_chain,
)
from agent.netevents import bulk as bulk_ops
from agent.netevents import records
from agent.netevents.analyzers import ANALYZERS, PROTO_ARP, Analyzer, Packet
from agent.netevents.analyzers.arp import ArpAnalyzer
from agent.netevents.analyzers.base import REFUSED_SYNACK
from agent.netevents.analyzers.dns import DnsAnalyzer
from agent.netevents.analyzers.ipv6_nd import NdAnalyzer
from agent.netevents.analyzers.service_probes import ServiceProbeAnalyzer
from agent.netevents.analyzers.tcp import TcpAnalyzer
from agent.netevents.arp import ArpTracker
from agent.netevents.direction import Direction
from agent.netevents.state import Counts, TrafficState
from agent.netevents.summaries import ProcessorStats
from agent.threatintel.feeds import IntelSet

IntelSource = Callable[[], IntelSet | None]
Handlers = tuple[Callable[[list[Event], Packet], None], ...]
_CHUNK = 2048
"""Packets of a range walked per step; each step leaves out those already known to be
count-only (a flood past its budgets), so they cost no Python step at all."""
_V6_EXT_FIRST = bytes(1 if p in (0, 43, 44, 51, 60, 135, 139, 140) else 0 for p in range(256))


class PacketProcessor:
    def __init__(
        self,
        settings: NetworkSection,
        intel: IntelSource | None = None,
        gateways: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.direction = Direction(settings.local_networks)
        self.stats = ProcessorStats()
        self.state = TrafficState(settings, self.stats, self.direction, intel)
        self.arp = ArpTracker([*settings.gateways, *gateways])
        self.defrag = Reassembler(counts=self.stats.fragments)
        by_proto: dict[int, list[Callable[[list[Event], Packet], None]]] = {}
        by_port: dict[tuple[int, int], list[Callable[[list[Event], Packet], None]]] = {}
        self.analyzers: list[Analyzer] = []
        dns: DnsAnalyzer | None = None
        probes: ServiceProbeAnalyzer | None = None
        for cls in ANALYZERS:
            analyzer = (ArpAnalyzer(self.state, self.arp) if cls is ArpAnalyzer
                        else TcpAnalyzer(self.state, self.arp) if cls is TcpAnalyzer
                        else NdAnalyzer(self.state, self.arp) if cls is NdAnalyzer
                        else cls(self.state))
            self.analyzers.append(analyzer)
            if isinstance(analyzer, DnsAnalyzer):
                dns = analyzer
            elif isinstance(analyzer, ServiceProbeAnalyzer):
                probes = analyzer
            for proto in analyzer.protocols:
                by_proto.setdefault(proto, []).append(analyzer.packet)
            for transport in analyzer.transports:
                for port in analyzer.ports():
                    by_port.setdefault((transport, port), []).append(analyzer.packet)
        counters: dict[int, list[bulk_ops.BulkCounter]] = {}
        for analyzer in self.analyzers:
            for kind in analyzer.bulk_kinds:
                counters.setdefault(kind, []).append(analyzer.count_bulk)
        tcp_analyzers = [a for a in self.analyzers if PROTO_TCP in a.protocols]
        if not all(REFUSED_SYNACK in a.bulk_kinds for a in tcp_analyzers):
            counters.pop(REFUSED_SYNACK, None)  # one of them cannot count them in bulk
        self._synack_handlers = tuple(a.refused_synack for a in tcp_analyzers)
        """The in-order part of a SYN-ACK counted in bulk (:data:`REFUSED_SYNACK`)."""
        self.bulk_counters: dict[int, tuple[bulk_ops.BulkCounter, ...]] = {
            k: tuple(v) for k, v in counters.items()}
        """Each count-only group kind's vectorised counters (the analyzers' ``count_bulk``)."""
        self._by_proto: dict[int, Handlers] = {k: tuple(v) for k, v in by_proto.items()}
        self._by_port: dict[tuple[int, int], Handlers] = {k: tuple(v) for k, v in by_port.items()}
        self._latest = -math.inf
        """The latest packet time processed (a range behind it is not ``ordered``)."""
        self._tcp_handlers = self._by_proto.get(PROTO_TCP, ())
        self._udp_handlers = self._by_proto.get(PROTO_UDP, ())
        # Ports with a port analyzer, as 64k tables: indexed per packet (bytes) and per batch.
        # ... and each port's handlers (empty: none), indexed by the inline path.
        tcp_ports, udp_ports = bytearray(65536), bytearray(65536)
        self._tcp_ported: list[Handlers] = [()] * 65536
        self._udp_ported: list[Handlers] = [()] * 65536
        for (transport, port), handlers in self._by_port.items():
            if not 0 <= port < 65536:  # no packet carries it (config does not bound ports)
                continue
            if transport == PROTO_TCP:
                tcp_ports[port] = 1
                self._tcp_ported[port] = handlers
            elif transport == PROTO_UDP:
                udp_ports[port] = 1
                self._udp_ported[port] = handlers
        self._tcp_ports = bytes(tcp_ports)
        self._udp_ports = bytes(udp_ports)
        dns_mask = dns.port_mask if dns is not None else np.zeros(65536, dtype=np.bool_)
        self.port_masks = bulk_ops.PortMasks(
            tcp=np.frombuffer(self._tcp_ports, dtype=np.uint8).astype(np.bool_),
            dns=dns_mask,
            udp_other=np.frombuffer(self._udp_ports, dtype=np.uint8).astype(np.bool_) & ~dns_mask,
            awaiting=probes.awaiting_hashes if probes is not None else None,
        )
        self._awaiting = probes.awaiting if probes is not None else {}
        """Connections awaiting their first client payload: their segments take the
        analyzers' path (agent/netevents/analyzers/service_probes.py)."""

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

        Ordinary segments of known TCP connections (Ethernet/IPv4, no SYN/RST) are counted
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
        state = self.state
        synack_handlers = self._synack_handlers
        kinds = (bulk_ops.classify(cols, self.port_masks)
                 if bulk and n >= bulk_ops.BULK_MIN_PACKETS else None)
        for first, last, rolls in bulk_ops.seconds(cols.timestamps, state.next_second):
            if rolls:
                out.extend(state.roll(float(cols.timestamps[first])))
            later: npt.NDArray[np.intp] | None = None
            if kinds is None:
                idx = np.arange(first, last)
            else:
                idx, later = self._bulk_segments(cols, kinds, first, last)
            counting = bulk_ops.CountOnly(state, self.port_masks, cols, kinds, first, last,
                                          self._latest, self.bulk_counters)
            skip, watch = counting.skip, counting.watch
            skip_marks = np.frombuffer(skip, dtype=np.uint8)
            for at in range(0, len(idx), _CHUNK):
                chunk = idx[at:at + _CHUNK]
                if at:  # packets of a saturated flood without a flow: nothing to do in order
                    chunk = chunk[skip_marks[chunk - first] != 1]
                starts = cols.offsets[chunk]
                for rel, ts, linktype, start, stop, wire in zip(
                    (chunk - first).tolist(), cols.timestamps[chunk].tolist(),
                    cols.linktypes[chunk].tolist(), starts.tolist(),
                    (starts + cols.caplen[chunk]).tolist(), cols.wire[chunk].tolist(),
                    strict=True,
                ):
                    skipped = skip[rel]
                    if skipped:
                        if skipped == 2:
                            counting.touch(rel, ts)
                        elif skipped == 3:  # a refused SYN-ACK: its in-order part
                            key = buffer[start + 26:start + 38]
                            state.count_flow(out, ts, (key[:4], key[4:8], PROTO_TCP), wire)
                            for handler in synack_handlers:
                                handler(ts, key, wire)
                        continue
                    self._packet(out, ts, linktype, buffer[start:stop], wire, interface)
                    if watch[rel]:
                        counting.check(rel)
            if later is not None:
                bulk_ops.add_segments(state, cols, later)
            counting.apply()
            self._latest = max(self._latest, float(cols.timestamps[first:last].max()))
        return out

    def _bulk_segments(
        self, cols: PacketColumns, kinds: bulk_ops.Kinds, start: int, stop: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp] | None]:
        """Count the ordinary segments of ``start:stop`` whose connection is known; the indices
        left for :meth:`_packet`, and those of segments whose connection a packet of the range
        teaches before their turn (:func:`~agent.netevents.bulk.learnt_in_range`: counted
        after the range's per-packet steps, by :func:`~agent.netevents.bulk.add_segments`).

        When the per-connection table cannot take every new connection of the range, nothing is
        counted in bulk and every packet of the range goes through :meth:`_packet` in order
        (that is where overflowing segments fall back to the flow and aggregate tables).
        """
        ordinary = kinds.ordinary[start:stop]
        idx = np.flatnonzero(ordinary)
        if not len(idx):
            return np.arange(start, stop), None
        counted = bulk_ops.count_segments(self.state, cols, idx + start)
        if counted is None:
            return np.arange(start, stop), None
        rest = np.ones(stop - start, dtype=np.bool_)
        rest[idx[counted]] = False
        later = None
        unknown = idx[~counted] + start
        if len(unknown):
            known = bulk_ops.learnt_in_range(self.state, cols, kinds, start, stop, unknown)
            if known is not None:
                later = unknown[known]
                rest[later - start] = False
        return np.flatnonzero(rest) + start, later

    def _packet(
        self, out: list[Event], ts: float, linktype: int, data: bytes, wire: int,
        interface: str | None,
    ) -> None:
        """Everything one packet does (its second already rolled)."""
        if (linktype == 1 and len(data) >= 34 and data[14] == 0x45 and data[12] == 8
                and data[13] == 0 and not (data[20] & 0x3F) | data[21]):
            # Ethernet, IPv4 without options, unfragmented: most of the traffic, read here
            # with the result decode() gives (tests/network/test_decode.py holds them equal).
            proto = data[23]
            n = len(data)
            if proto == PROTO_TCP and n >= 48:
                if (n >= 54 and data[47] & 0x16 == 0x10
                        and not self._tcp_ports[(data[34] << 8) | data[35]]
                        and not self._tcp_ports[(data[36] << 8) | data[37]]
                        and not (self._awaiting and data[26:38] in self._awaiting
                                 and _has_payload(data))):
                    # An ordinary segment (ACK, no SYN/RST) of a known connection on no port
                    # an analyzer reads only counts: per connection (addresses + ports, one
                    # slice), folded into flows and aggregates when the second ends.
                    state = self.state
                    segments = state.segments
                    ckey = data[26:38]
                    seg = segments.get(ckey)
                    if seg is not None:
                        seg.packets += 1
                        seg.bytes += wire
                        return
                    if len(segments) < state.max_keys and (
                            state.connection_known(ckey) or _has_payload(data)):
                        state.remember_connection(ckey)
                        segments[ckey] = Counts(1, wire)
                        return
                hlen = (data[46] >> 4) * 4
                if hlen < 20:
                    self.stats.errors["bad_ip_header"] += 1
                    return
                total = (data[16] << 8) | data[17]
                if total < 20:
                    if total:
                        self.stats.errors["bad_ip_header"] += 1
                        return
                    total = n - 14
                pkt = Packet(ts, 4, data[26:30], data[30:34], PROTO_TCP,
                             (data[34] << 8) | data[35], (data[36] << 8) | data[37], data[47],
                             data, 34 + hlen, min(14 + total, n), wire, interface)
                fkey = (pkt.src, pkt.dst, PROTO_TCP)
                flow = self.state.flows.get(fkey)
                if flow is None:
                    self.state.new_flow(out, ts, fkey, wire)
                else:  # state.count_flow(), inline
                    flow.packets += 1
                    flow.bytes += wire
                    flow.last = ts
                for handler in self._tcp_handlers:
                    handler(out, pkt)
                ported = self._tcp_ported  # _ported(), inline
                for handler in ported[pkt.dport] or ported[pkt.sport]:
                    handler(out, pkt)
                return
            if proto == PROTO_UDP and n >= 42:
                total = (data[16] << 8) | data[17]
                if total < 20:
                    if total:
                        self.stats.errors["bad_ip_header"] += 1
                        return
                    total = n - 14
                pkt = Packet(ts, 4, data[26:30], data[30:34], PROTO_UDP,
                             (data[34] << 8) | data[35], (data[36] << 8) | data[37], 0,
                             data, 42, min(14 + total, n), wire, interface)
                fkey = (pkt.src, pkt.dst, PROTO_UDP)
                flow = self.state.flows.get(fkey)
                if flow is None:
                    self.state.new_flow(out, ts, fkey, wire)
                else:  # state.count_flow(), inline
                    flow.packets += 1
                    flow.bytes += wire
                    flow.last = ts
                for handler in self._udp_handlers:
                    handler(out, pkt)
                ported = self._udp_ported  # _ported(), inline
                for handler in ported[pkt.dport] or ported[pkt.sport]:
                    handler(out, pkt)
                return
        r = decode(data, linktype)
        if isinstance(r, str):
            self.stats.errors[r] += 1
            if r == V6_CHAIN_TOO_LONG:
                self.stats.evasion[r] += 1
            return
        family, src, dst, proto, sport, dport, flags, l4, end = r
        if family == 0:
            self._dispatch(out, PROTO_ARP, Packet(ts, 0, src, dst, 0, 0, 0, 0, data, l4, end,
                                                  wire, interface))
            return
        if proto == PROTO_FRAGMENT:
            self._fragment(out, ts, linktype, data, wire, interface, src, dst)
            return
        self._datagram(out, Packet(ts, family, src, dst, proto, sport, dport, flags, data, l4,
                                   end, wire, interface, 0, self._v6_headers(family, data,
                                                                             linktype)))

    def _datagram(self, out: list[Event], pkt: Packet) -> None:
        """A whole IP datagram: its flow, then its analyzers."""
        proto = pkt.proto
        self.state.count_flow(out, pkt.ts, (pkt.src, pkt.dst, proto), pkt.wire)
        self._dispatch(out, proto, pkt)
        if proto == PROTO_TCP:
            ports = self._tcp_ports
        elif proto == PROTO_UDP:
            ports = self._udp_ports
        else:
            return
        if ports[pkt.sport] or ports[pkt.dport]:
            self._ported(out, pkt)

    def _ported(self, out: list[Event], pkt: Packet) -> None:
        """The port analyzers of a TCP/UDP datagram on a port one reads (either side)."""
        proto = pkt.proto
        handlers = self._by_port.get((proto, pkt.dport)) or self._by_port[(proto, pkt.sport)]
        for handler in handlers:
            handler(out, pkt)

    def _dispatch(self, out: list[Event], proto: int, pkt: Packet) -> None:
        for handler in self._by_proto.get(proto, ()):
            handler(out, pkt)

    def _v6_headers(self, family: int, data: bytes, linktype: int) -> tuple[int, ...]:
        """The IPv6 extension header chain of a datagram that has one (evidence: counted when
        unusual)."""
        if family != 6:
            return ()
        link = link_payload(data, linktype)
        if isinstance(link, str) or not _V6_EXT_FIRST[data[link[1] + 6]]:
            return ()
        chain = ipv6_chain(data, link[1])
        if isinstance(chain, str):
            return ()
        headers = chain[2]
        if unusual_chain(headers):
            self.stats.evasion["ipv6_unusual_chain"] += 1
        return headers

    def _fragment(self, out: list[Event], ts: float, linktype: int, data: bytes, wire: int,
                  interface: str | None, src: bytes, dst: bytes) -> None:
        """One IP fragment: counted as fragment traffic; reassembled, the whole datagram goes
        the way of any packet (its flow, its analyzers) with ``fragments`` set."""
        self.stats.add_traffic("fragment", self.direction.of(src, dst), 1, wire)
        frag = fragment_of(data, linktype)
        if isinstance(frag, str):
            self.stats.errors[frag] += 1
            return
        key, offset, more, header, payload, proto, before = frag
        transport = 20 if proto == PROTO_TCP else 8
        evicted = self.stats.fragments[EVICTED]
        result = self.defrag.add(ts, key, offset, more, header, payload, transport)
        if self.stats.fragments[EVICTED] != evicted:  # the table was full: oldest pushed out
            self.stats.table_overflows["fragments"] += self.stats.fragments[EVICTED] - evicted
        if result is None:
            return
        if isinstance(result, str):
            if result == OVERLAP:
                self._evasion(out, ts, src, dst, proto, OVERLAP, wire, interface)
            else:
                self.stats.table_overflows["fragments"] += 1
            return
        self._reassembled(out, ts, result, before, src, dst, interface)

    def _reassembled(self, out: list[Event], ts: float, whole: Reassembled,
                     before: tuple[int, ...], src: bytes, dst: bytes,
                     interface: str | None) -> None:
        self.stats.reassembled += 1
        if whole.tiny:
            self._evasion(out, ts, src, dst, whole.packet[9] if len(src) == 4
                          else whole.packet[6], "tiny_fragment", len(whole.packet), interface)
        r = decode(whole.packet, LINKTYPE_RAW)
        if isinstance(r, str):
            self.stats.errors[r] += 1
            return
        family, src, dst, proto, sport, dport, flags, l4, end = r
        if proto == PROTO_FRAGMENT:  # a fragment inside a fragment: never from a real stack
            self.stats.errors["bad_ip_header"] += 1
            return
        headers = self._v6_headers(family, whole.packet, LINKTYPE_RAW)
        self._datagram(out, Packet(ts, family, src, dst, proto, sport, dport, flags,
                                   whole.packet, l4, end, len(whole.packet), interface,
                                   whole.fragments, (*before, PROTO_FRAGMENT, *headers)
                                   if family == 6 else ()))

    def _evasion(self, out: list[Event], ts: float, src: bytes, dst: bytes, proto: int,
                 action: str, wire: int, interface: str | None) -> None:
        """Traffic shaped to slip past a sensor: counted, and an event within the budgets."""
        self.stats.evasion[action] += 1
        if self.state.budgets.admit(src, dst, -256):
            self.stats.events["packet"] += 1
            out.append(records.evasion_event(ts, src, dst, proto, action,
                                             self.direction.of(src, dst), wire, interface))

    # ------------------------------------------------------------------ time

    def advance(self, now: float) -> list[Event]:
        """Emit what intervals ended before ``now`` (wall time in live capture)."""
        state = self.state
        out = state.roll(now) if now >= state.next_second and state.second >= 0 else []
        for analyzer in self.analyzers:
            out.extend(analyzer.expire(now))
        return out

    def flush(self) -> list[Event]:
        """End of input: emit the open second's aggregates and the open flow interval."""
        out = self.state.flush()
        for analyzer in self.analyzers:
            out.extend(analyzer.flush())
        return out


def _has_payload(data: bytes) -> bool:
    """Whether an Ethernet/IPv4 (no options) TCP segment carries data (TSO frames, total
    length 0, are measured by the captured bytes)."""
    total = (data[16] << 8) | data[17]
    end = min(14 + total, len(data)) if total else len(data)
    return end > 34 + (data[46] >> 4) * 4
