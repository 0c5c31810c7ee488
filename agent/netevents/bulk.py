"""Bulk steps of the packet processor: what can be counted for a whole batch at once.

:class:`~agent.netevents.processor.PacketProcessor` works on :class:`PacketColumns`. The bulk of
real traffic does nothing but count, so it is counted with numpy instead of one Python step per
packet, with exactly the state changes the per-packet path would make:

* :func:`classify` — which frames are Ethernet/IPv4/TCP (no options, unfragmented), which of
  those are ordinary segments (ACK without SYN/RST) and which are SYNs;
* :func:`seconds` — where the batch crosses into a new second of packet time (the processor
  rolls its per-second tables there);
* :func:`count_segments` — ordinary segments added to the per-connection counters in one step
  per connection;
* :class:`CountOnly` — a busy group (a SYN flood toward one service; UDP or ICMP from one
  source to one destination) whose event budget for the second is spent only adds to counters
  from then on: those packets are counted in one step per group.

Everything else (control packets with events to make, DNS, ARP, ICMP, fragments, other link
types, malformed frames) goes through the per-packet path in order.

(Longer than the project's ~400 lines: the flood groups of :class:`CountOnly` share one
grouping, one skip/watch bookkeeping and one proof obligation — equality with the per-packet
path — and are kept together until each protocol's share moves beside its analyzer, as DNS's
did: :meth:`~agent.netevents.analyzers.base.Analyzer.count_bulk`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agent.netdecode.columns import PacketColumns
from agent.netevents.analyzers.base import (
    DNS_FROM_CLIENT,
    DNS_TO_CLIENT,
    ICMP,
    ICMP_ERROR,
    ICMP_PROBE,
    REFUSED_SYNACK,
    SYN_FLOOD,
    UDP,
)
from agent.netevents.analyzers.icmp import ICMP4_PROBES
from agent.netevents.analyzers.service_probes import awaiting_rows
from agent.netevents.entries import Counts, Flow, source_slots
from agent.netevents.state import ALL_PORTS, TrafficState

BULK_MIN_PACKETS = 128
"""Smaller batches (a quiet link's ring block) go packet by packet: numpy's fixed cost per batch
is larger than what bulk counting saves there."""
FLOOD_MIN_PACKETS = 32
"""Packets of one group within one second of one batch before the group is watched."""

_Mask = npt.NDArray[np.bool_]


class PortMasks(NamedTuple):
    """Ports (64k tables) with a port analyzer: TCP segments on ``tcp`` ports are never
    ordinary, UDP datagrams on ``udp_other`` ports never count-only; ``dns`` ports are counted
    as DNS."""

    tcp: _Mask
    dns: _Mask
    udp_other: _Mask
    awaiting: Callable[[], npt.NDArray[np.uint64]] | None = None
    """Hashes of the connections awaiting their first client payload: their segments are
    never ordinary (:func:`~agent.netevents.analyzers.service_probes.awaiting_rows`)."""


class Kinds(NamedTuple):
    ordinary: _Mask
    """Ethernet/IPv4/TCP segments with ACK and without SYN/RST, on no analyzed port."""
    syn: _Mask
    """Ethernet/IPv4/TCP segments with SYN and without ACK."""
    light: _Mask
    """Ethernet/IPv4 UDP and ICMP datagrams without options, unfragmented, headers whole."""
    synack: _Mask
    """Ethernet/IPv4/TCP segments with SYN and ACK (they teach the connection table)."""
    learners: _Mask
    """Ethernet/IPv4/TCP segments that may teach the connection table from the per-packet
    path besides ``ordinary`` ones: SYN-ACKs, and ordinary segments on analyzed ports."""
    opaque: _Mask
    """Frames that might carry an IPv4 TCP segment in another shape (VLAN tags, IP options,
    fragments, other link types, short headers): they could teach the connection table too."""


def classify(cols: PacketColumns, masks: PortMasks) -> Kinds:
    """The fast-path conditions of :meth:`PacketProcessor._packet`, for the whole batch.
    Segments to or from a port a TCP analyzer reads (DNS over TCP) are never ordinary."""
    head = cols.head
    caplen = cols.caplen
    ipv4 = (
        (cols.linktypes == 1) & (caplen >= 34)
        & (head[:, 14] == 0x45) & (head[:, 12] == 8) & (head[:, 13] == 0)
        & (((head[:, 20] & 0x3F) | head[:, 21]) == 0)
    )
    proto = head[:, 23]
    tcp = ipv4 & (caplen >= 54) & (proto == 6)
    flags = head[:, 47]
    total = (head[:, 16].astype(np.int64) << 8) | head[:, 17]
    sport = (head[:, 34].astype(np.intp) << 8) | head[:, 35]
    dport = (head[:, 36].astype(np.intp) << 8) | head[:, 37]
    light = ipv4 & ((total >= 20) | (total == 0)) & (
        ((proto == 17) & (caplen >= 42) & ~(masks.udp_other[sport] | masks.udp_other[dport]))
        | ((proto == 1) & (caplen >= 38)))
    analyzed = masks.tcp[sport] | masks.tcp[dport]
    plain_ordinary = tcp & ((flags & 0x16) == 0x10)
    synack = tcp & ((flags & 0x12) == 0x12)
    ethertype = (head[:, 12].astype(np.int64) << 8) | head[:, 13]
    opaque = ((cols.linktypes != 1) | np.isin(ethertype, (0x8100, 0x88A8, 0x9100))
              | ((ethertype == 0x0800) & ~(ipv4 & ((proto != 6) | tcp))))
    if masks.awaiting is not None:  # first client payloads go to their analyzer
        analyzed |= awaiting_rows(head, caplen, plain_ordinary, synack, masks.awaiting())
    return Kinds(plain_ordinary & ~analyzed, tcp & ((flags & 0x12) == 0x02), light, synack,
                 synack | (plain_ordinary & analyzed), opaque)


def groups(
    columns: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Rows with equal values: ``(first index of each group, group of each row, group sizes)``.

    Groups are numbered in order of first appearance. Rows are hashed to 32 bits and ordered by
    two stable 16-bit radix passes; the grouping is then verified against the rows themselves
    (a hash collision takes an exact, slower sort).
    """
    m = len(columns)
    parts = [np.ascontiguousarray(columns[:, k]) for k in range(columns.shape[1])]
    h = np.zeros(m, dtype=np.uint64)
    for part in parts:
        h = (h ^ part) * np.uint64(0x9E3779B97F4A7C15)
    h >>= np.uint64(32)
    low = np.argsort(h.astype(np.uint16), kind="stable")
    order = low[np.argsort((h >> np.uint64(16)).astype(np.uint16)[low], kind="stable")]
    ordered = h[order]
    starts = np.empty(m, dtype=np.bool_)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(m, dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    first = order[starts]  # stable passes: each run starts with its smallest index
    same = first[inverse]
    if not all((part[same] == part).all() for part in parts):
        _, first, inverse = np.unique(columns, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    # Renumber by first appearance.
    rank = np.argsort(first, kind="stable")
    renumber = np.empty(len(first), dtype=np.intp)
    renumber[rank] = np.arange(len(first))
    inverse = renumber[inverse]
    return first[rank], inverse, np.bincount(inverse, minlength=len(first))


def seconds(
    timestamps: npt.NDArray[np.float64], next_second: float
) -> Iterator[tuple[int, int, bool]]:
    """``(start, stop, rolls)`` ranges of the batch; ``rolls`` when ``start`` opens a new second.

    The per-packet rule is: a packet whose time is at or past ``next_second`` rolls, and the
    next second then starts at ``int(ts) + 1``. For non-negative times ``next_second`` before
    packet ``i`` is therefore the running maximum of ``floor(ts) + 1`` over earlier packets.
    """
    n = len(timestamps)
    if (timestamps < 0).any():
        points = _roll_points_sequential(timestamps.tolist(), next_second)
    else:
        following = np.empty(n, dtype=np.float64)
        following[0] = next_second
        following[1:] = np.floor(timestamps[:-1]) + 1.0
        points = np.flatnonzero(timestamps >= np.fmax.accumulate(following)).tolist()
    if not points or points[0] != 0:
        points.insert(0, 0)
        first_rolls = False
    else:
        first_rolls = True
    points.append(n)
    for k in range(len(points) - 1):
        yield points[k], points[k + 1], first_rolls or k > 0


def _roll_points_sequential(timestamps: list[float], next_second: float) -> list[int]:
    points = []
    for i, ts in enumerate(timestamps):
        if ts >= next_second:
            points.append(i)
            next_second = int(ts) + 1
    return points


def count_segments(
    state: TrafficState, cols: PacketColumns, idx: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_] | None:
    """Add the ordinary segments ``idx`` of known connections (counted this second already,
    or in the connection table) to the per-connection counters, in first-seen order; which of
    ``idx`` were counted. The others (a connection never seen: maybe an ACK-scan probe) are
    left to the per-packet path.

    Returns ``None`` without changing anything when the table cannot take every new
    connection: the caller then processes those packets one by one, like the per-packet path.
    """
    segments = state.segments
    keys = np.ascontiguousarray(cols.head[idx, 26:38])
    first, inverse, packets = groups(keys.view(">u4"))
    names: list[bytes] = keys[first].view("V12").ravel().tolist()
    counted = np.fromiter(map(segments.__contains__, names), dtype=np.bool_, count=len(names))
    present = int(np.count_nonzero(counted))
    if present < len(names):
        counted |= np.fromiter(map(state.connection_known, names), dtype=np.bool_,
                               count=len(names))
    if len(segments) + len(names) - present > state.max_keys:
        # Room for every new connection, counted here or not: the per-packet path then never
        # finds the table full either, whatever the order.
        return None
    rows: npt.NDArray[np.bool_] = counted[inverse]
    nbytes = np.bincount(inverse, weights=cols.wire[idx], minlength=len(first))
    for name, count, size, take in zip(
        names, packets.tolist(), nbytes.astype(np.int64).tolist(), counted.tolist(),
        strict=True,
    ):
        if not take:
            continue
        seg = segments.get(name)
        if seg is None:
            segments[name] = Counts(count, size)
        else:
            seg.packets += count
            seg.bytes += size
    return rows


def learnt_in_range(
    state: TrafficState, cols: PacketColumns, kinds: Kinds, start: int, stop: int,
    rows: npt.NDArray[np.intp],
) -> npt.NDArray[np.bool_] | None:
    """Which of ``rows`` (ordinary segments of ``start:stop`` whose connection was unknown when
    the range began) will find it known at their turn; ``None`` when that cannot be told.

    In the per-packet path such a segment is counted, and changes nothing else, once its
    connection was learnt (:meth:`~agent.netevents.state.TrafficState.remember_connection`)
    by an earlier packet of the range: a SYN-ACK of the connection (either direction) or an
    earlier ordinary segment of it (each one not yet counted this second is remembered, with
    an event or not). The first of them is left to the per-packet path (it may be an
    ACK-scan probe); the later ones are the handshake's last ACK, data and FIN of a connection
    opened within the batch — most of a busy server's new connections. That holds only when
    every learning succeeds and nothing else can teach the table: the table has room for every
    packet of the range that may learn (``None`` otherwise), and no frame of the range carries
    TCP in another shape (:attr:`Kinds.opaque`: it could teach the same connection).
    """
    if kinds.opaque[start:stop].any():
        return None
    synacks = np.flatnonzero(kinds.synack[start:stop]) + start
    others = int(np.count_nonzero(kinds.learners[start:stop]))
    if len(state.connections) + len(rows) + others > state.max_keys:
        return None
    learners = np.sort(np.concatenate((rows, synacks)))
    head = cols.head[learners]
    words = np.ascontiguousarray(head[:, 26:38]).view(">u4").astype(np.uint64)
    ports = words[:, 2]
    a = (words[:, 0] << np.uint64(16)) | (ports >> np.uint64(16))
    b = (words[:, 1] << np.uint64(16)) | (ports & np.uint64(0xFFFF))
    low, high = np.minimum(a, b), np.maximum(a, b)
    key = np.empty((len(learners), 4), dtype=np.uint32)
    key[:, 0] = (low >> np.uint64(32)).astype(np.uint32)
    key[:, 1] = (low & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    key[:, 2] = (high >> np.uint64(32)).astype(np.uint32)
    key[:, 3] = (high & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    first, _, _ = groups(key)
    later = np.ones(len(learners), dtype=np.bool_)
    later[first] = False
    known: npt.NDArray[np.bool_] = later[np.searchsorted(learners, rows)]
    return known


def add_segments(state: TrafficState, cols: PacketColumns, rows: npt.NDArray[np.intp]) -> None:
    """Count the ordinary segments ``rows`` of connections known at their turn (any order: a
    counted segment only adds to its connection's counters)."""
    if not len(rows):
        return
    segments = state.segments
    keys = np.ascontiguousarray(cols.head[rows, 26:38])
    first, inverse, packets = groups(keys.view(">u4"))
    names: list[bytes] = keys[first].view("V12").ravel().tolist()
    nbytes = np.bincount(inverse, weights=cols.wire[rows], minlength=len(first))
    for name, count, size in zip(names, packets.tolist(), nbytes.astype(np.int64).tolist(),
                                 strict=True):
        seg = segments.get(name)
        if seg is None:
            segments[name] = Counts(count, size)
        else:
            seg.packets += count
            seg.bytes += size


BulkCounter = Callable[[PacketColumns, npt.NDArray[np.intp]], None]


class _Group:
    """Packets of one batch range that share every key their effects touch."""

    __slots__ = (
        "dst",
        "flow",
        "flowing",
        "kind",
        "members",
        "partial",
        "port",
        "proto",
        "sources",
        "src",
        "taken",
    )

    def __init__(self, kind: int, members: npt.NDArray[np.intp], src: bytes, dst: bytes,
                 proto: int, port: int) -> None:
        self.kind = kind
        self.members = members
        self.src = src
        self.dst = dst
        self.proto = proto
        self.port = port
        """Destination port (SYN floods), ``-type - 1`` (ICMP budget key) or 0."""
        self.flow: Flow | None = None
        self.flowing: list[tuple[npt.NDArray[np.intp], list[Flow]]] = []
        """SYN floods: skipped SYNs whose source has a flow toward the destination (their
        relative indices, and the flow of each)."""
        self.partial = False
        """SYN floods: some SYNs were taken while the destination could still start flows."""
        self.taken: npt.NDArray[np.intp] | None = None
        self.sources: npt.NDArray[np.uint32] = np.zeros(0, dtype=np.uint32)


class CountOnly:
    """Packets of a batch range whose per-packet work has become counting only.

    Busy groups of the range are *watched*: SYNs toward one service (address, port); UDP
    datagrams and ICMP messages of one source → destination (and, for DNS, one client side;
    for ICMP, one type). After each watched packet the processor calls :meth:`check`. Once the
    group's event budget for the second is spent and its flow and aggregate exist (or cannot
    exist: a SYN flood's new-flow budget is spent too), every later packet of the group would
    only add to counters — those are marked in :attr:`skip` and added up by :meth:`apply` (their
    events are refused by a per-key budget, which is checked before the class pools, so they
    never touch those). What depends on packet order stays per packet: at a skipped packet's
    turn the processor sets its flow's last-seen time (:meth:`touch`, for packets marked 2 in
    :attr:`skip`). Indices are relative to the range.
    """

    def __init__(
        self, state: TrafficState, masks: PortMasks, cols: PacketColumns, kinds: Kinds | None,
        start: int, stop: int, latest: float = math.inf,
        bulk_counters: Mapping[int, Sequence[BulkCounter]] | None = None,
    ) -> None:
        self.state = state
        self.bulk_counters = bulk_counters or {}
        """The analyzers' vectorised counters (:meth:`Analyzer.count_bulk
        <agent.netevents.analyzers.base.Analyzer.count_bulk>`) by group kind: what their
        per-packet handler counts for the skipped packets of such a group."""
        self.cols = cols
        self.start = start
        times = cols.timestamps[start:stop]
        self.ordered = bool(len(times)) and bool(times[0] >= latest) and bool(
            (times[1:] >= times[:-1]).all())
        """Times of the range never go back, nor behind any packet before it (``latest``):
        the last-seen time of a flow is then the latest time of its packets."""
        self.skip = bytearray(stop - start)
        self.watch = bytearray(stop - start)
        self._group_at: list[int] | None = None
        """Index into :attr:`_groups` of each watched packet (relative index)."""
        self._group_index = np.zeros(stop - start, dtype=np.int32)
        self._groups: list[_Group] = []
        if kinds is None:
            return
        syn = np.flatnonzero(kinds.syn[start:stop])
        if len(syn) >= FLOOD_MIN_PACKETS:
            head = cols.head[syn + start]
            service = np.empty((len(syn), 2), dtype=np.uint32)
            service[:, 0] = np.ascontiguousarray(head[:, 30:34]).view(">u4").ravel()
            service[:, 1] = (head[:, 36].astype(np.uint32) << 8) | head[:, 37]
            self._watch(SYN_FLOOD, syn, service, 6)
        light = np.flatnonzero(kinds.light[start:stop])
        if len(light) >= FLOOD_MIN_PACKETS:
            head = cols.head[light + start]
            key = np.empty((len(light), 4), dtype=np.uint32)
            key[:, 0:2] = np.ascontiguousarray(head[:, 26:34]).view(">u4")
            proto = head[:, 23]
            key[:, 2] = proto
            dns_port = masks.dns
            sport = (head[:, 34].astype(np.int64) << 8) | head[:, 35]
            dport = (head[:, 36].astype(np.int64) << 8) | head[:, 37]
            udp_kind = np.where(dns_port[sport], DNS_TO_CLIENT,
                                np.where(dns_port[dport], DNS_FROM_CLIENT, UDP))
            icmp_type = head[:, 34]
            icmp_kind = np.where(np.isin(icmp_type, sorted(ICMP4_PROBES)), ICMP_PROBE,
                                 np.where(icmp_type == 3, ICMP_ERROR, ICMP))
            key[:, 3] = np.where(proto == 17, udp_kind, (icmp_kind << 8) | icmp_type)
            self._watch(-1, light, key, 0)
        if REFUSED_SYNACK in self.bulk_counters:
            self._watch_synacks(masks, kinds, start, stop)

    def _watch_synacks(self, masks: PortMasks, kinds: Kinds, start: int, stop: int) -> None:
        """SYN-ACKs per server (address, port), on no analyzed port, with a TCP header of at
        least 20 bytes and an IP total length of 0 (TSO) or at least 20 (the others are
        errors per packet)."""
        rows = np.flatnonzero(kinds.synack[start:stop])
        if len(rows) < FLOOD_MIN_PACKETS:
            return
        head = self.cols.head[rows + start]
        sport = (head[:, 34].astype(np.intp) << 8) | head[:, 35]
        dport = (head[:, 36].astype(np.intp) << 8) | head[:, 37]
        total = (head[:, 16].astype(np.intp) << 8) | head[:, 17]
        keep = (~(masks.tcp[sport] | masks.tcp[dport]) & (head[:, 46] >= 0x50)
                & ((total >= 20) | (total == 0)))
        if np.count_nonzero(keep) < FLOOD_MIN_PACKETS:
            return
        key = np.empty((int(np.count_nonzero(keep)), 2), dtype=np.uint32)
        key[:, 0] = np.ascontiguousarray(head[keep, 26:30]).view(">u4").ravel()
        key[:, 1] = sport[keep]
        self._watch(REFUSED_SYNACK, rows[keep], key, 6)

    def _watch(
        self, kind: int, rows: npt.NDArray[np.intp], key: npt.NDArray[np.uint32], proto: int
    ) -> None:
        first, inverse, counts = groups(key)
        busy = np.flatnonzero(counts >= FLOOD_MIN_PACKETS)
        if not len(busy):
            return
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(counts)))
        watch = np.frombuffer(self.watch, dtype=np.uint8)
        for g in busy.tolist():
            members = rows[order[bounds[g]:bounds[g + 1]]]
            values = key[first[g]].tolist()
            if kind == SYN_FLOOD:
                group = _Group(kind, members, b"", values[0].to_bytes(4, "big"), proto,
                               values[1])
            elif kind == REFUSED_SYNACK:  # the server and its port
                group = _Group(kind, members, values[0].to_bytes(4, "big"), b"", proto,
                               values[1])
            else:
                sub, icmp_type = values[3] >> 8, values[3] & 0xFF
                group = _Group(values[3] if values[2] == 17 else sub,
                               members, values[0].to_bytes(4, "big"),
                               values[1].to_bytes(4, "big"), values[2], -icmp_type - 1)
            self._groups.append(group)
            self._group_index[members] = len(self._groups) - 1
            watch[members] = 1

    def _group(self, rel: int) -> _Group:
        if self._group_at is None:
            self._group_at = self._group_index.tolist()
        return self._groups[self._group_at[rel]]

    def touch(self, rel: int, ts: float) -> None:
        """Skipped packet ``rel`` (marked 2) has its turn at ``ts``: its flow's last-seen time."""
        flow = self._group(rel).flow
        assert flow is not None
        flow.last = ts

    def check(self, rel: int) -> None:
        """After watched packet ``rel``: skip the rest of its group once only counting is left."""
        group = self._group(rel)
        if not self._saturated(group):
            return
        if group.kind == SYN_FLOOD:
            self._check_syn(group, rel)
            return
        np.frombuffer(self.watch, dtype=np.uint8)[group.members] = 0
        later = group.members[group.members > rel]
        if len(later):
            np.frombuffer(self.skip, dtype=np.uint8)[later] = (
                3 if group.kind == REFUSED_SYNACK else 1 if group.flow is None else 2)
            group.taken = later

    def _check_syn(self, group: _Group, rel: int) -> None:
        """A SYN flood whose destination budget is spent: take what only counts now. Until the
        destination's new-flow budget is spent too, that is (in an :attr:`ordered` range) the
        SYNs of sources with a flow; the group stays watched for the rest, taken once it is."""
        spent = self.state.new_flows_spent(group.dst)
        if not spent and (group.partial or not self.ordered):
            return
        skip = np.frombuffer(self.skip, dtype=np.uint8)
        later = group.members[group.members > rel]
        later = later[skip[later] == 0]
        later = self._syn_flows(group, later, spent)
        if spent:
            np.frombuffer(self.watch, dtype=np.uint8)[group.members] = 0
        else:
            group.partial = True
        if len(later):
            skip[later] = 1
            group.taken = later if group.taken is None else np.concatenate((group.taken, later))

    def _saturated(self, group: _Group) -> bool:
        """Whether the group's packets only count from now on (keeps its flow for later)."""
        state = self.state
        budgets = state.budgets
        if group.kind == SYN_FLOOD:  # which SYNs only count then: see _syn_flows
            return budgets.destination_spent(group.dst, group.port)
        if group.kind == REFUSED_SYNACK:  # every later event of the server is refused
            return (budgets.source_spent(group.src)
                    and (group.src, group.port, 6) in state.aggregates)
        flow = state.flows.get((group.src, group.dst, group.proto))
        if flow is None:
            return False
        if (state.aggregates.get((group.dst, 0, group.proto)) is None
                and len(state.aggregates) < state.max_keys):
            return False
        if group.kind in (DNS_FROM_CLIENT, DNS_TO_CLIENT):
            client = group.dst if group.kind == DNS_TO_CLIENT else group.src
            if not budgets.aux_spent(b"dns" + client, state.settings.max_dns_events_per_client):
                return False
        elif group.kind in (ICMP_PROBE, ICMP_ERROR) and not (
                budgets.destination_spent(group.dst, group.port)
                or budgets.source_spent(group.src)):
            return False
        group.flow = flow
        return True

    def _syn_flows(self, group: _Group, later: npt.NDArray[np.intp], spent: bool
                   ) -> npt.NDArray[np.intp]:
        """Which of the SYNs ``later`` (their events refused by the destination's budget) only
        count: those from a source without a flow once the destination's new-flow budget is
        spent (each is refused a flow), and — when the range is :attr:`ordered` — those from a
        source with a flow toward it (they update it). The others stay per packet."""
        sources = np.ascontiguousarray(self.cols.head[later + self.start, 26:30]).view(">u4")
        sources = sources.ravel().astype(np.uint32)
        flows = {int.from_bytes(src, "big"): flow for (src, dst, proto), flow
                 in self.state.flows.items() if dst == group.dst and proto == 6}
        if flows:
            has_flow = np.isin(sources, np.fromiter(flows, dtype=np.uint32, count=len(flows)))
        else:
            has_flow = np.zeros(len(sources), dtype=np.bool_)
        if self.ordered:
            keep = None if spent else has_flow
        else:
            keep = ~has_flow if spent else np.zeros(len(sources), dtype=np.bool_)
        if keep is not None:
            later, sources, has_flow = later[keep], sources[keep], has_flow[keep]
        if self.ordered and has_flow.any():
            group.flowing.append((later[has_flow],
                                  [flows[s] for s in sources[has_flow].tolist()]))
        group.sources = np.concatenate((group.sources, sources))
        return later

    def apply(self) -> None:
        """Add the skipped packets to the counters the per-packet path would have changed."""
        state, stats = self.state, self.state.stats
        for group in self._groups:
            if group.taken is None:
                continue
            n = len(group.taken)
            kind = group.kind
            if kind == REFUSED_SYNACK:  # refused by the server's budget; the rest in order
                stats.suppressed += n
                for counter in self.bulk_counters[kind]:
                    counter(self.cols, group.taken + self.start)
                continue
            nbytes = int(self.cols.wire[group.taken + self.start].sum())
            if kind == SYN_FLOOD:
                flowless, flowless_bytes = self._count_syn_flows(group, n, nbytes)
                if flowless:
                    stats.table_overflows["flows_per_destination"] += flowless
                    stats.add_traffic("tcp", "unknown", flowless, flowless_bytes)
                entry = state.aggregates.get((group.dst, group.port, 6))
            else:
                assert group.flow is not None
                group.flow.packets += n
                group.flow.bytes += nbytes
                entry = state.aggregates.get((group.dst, 0, group.proto))
            if kind == SYN_FLOOD:
                stats.tcp_control["syn"] += n
                self._count_host(group, n, nbytes)
            else:  # DNS, ICMP: the analyzers' vectorised counters (none for UDP)
                for counter in self.bulk_counters.get(kind, ()):
                    counter(self.cols, group.taken + self.start)
            if kind not in (UDP, ICMP):  # each refused by its per-key budget
                stats.suppressed += n
            if entry is None:
                # The aggregate table was full: each packet would have found no room.
                stats.table_overflows["aggregates"] += n
                continue
            entry.packets += n
            entry.bytes += nbytes
            if kind == SYN_FLOOD:
                entry.syn += n
                np.frombuffer(entry.source_bitmap(), dtype=np.uint8)[
                    source_slots(group.sources)] = 1
            elif kind == ICMP_PROBE:
                entry.echo += n
            # UDP and ICMP probes set their one source's bitmap slot on the packets before.

    def _count_syn_flows(self, group: _Group, n: int, nbytes: int) -> tuple[int, int]:
        """The skipped SYNs of sources with a flow, in their flows; (packets, bytes) of the
        others (each refused a new flow)."""
        for at, flows in group.flowing:
            rows = at + self.start
            wire = self.cols.wire[rows].tolist()
            times = self.cols.timestamps[rows].tolist()
            for flow, size, ts in zip(flows, wire, times, strict=True):
                flow.packets += 1
                flow.bytes += size
                flow.last = max(flow.last, ts)
            n -= len(flows)
            nbytes -= sum(wire)
        return n, nbytes

    def _count_host(self, group: _Group, n: int, nbytes: int) -> None:
        """The skipped SYNs of a flood in their destination's all-ports aggregate."""
        host = self.state.aggregates.get((group.dst, ALL_PORTS, 6))
        if host is None:  # the table was full: each packet would have found no room
            self.state.stats.table_overflows["aggregates"] += n
            return
        host.packets += n
        host.bytes += nbytes
        host.syn += n
        np.frombuffer(host.source_bitmap(), dtype=np.uint8)[source_slots(group.sources)] = 1
