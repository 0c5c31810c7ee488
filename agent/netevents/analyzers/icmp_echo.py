"""Echo request/reply pairs carrying data: ICMP tunnels too slow for a volume threshold.

Per (requester, responder) pair — the requester is the echo request's sender, the party that
acted (the tunnel client, whichever way the data flows): in ptunnel-ng's download the bytes ride
in the proxy's echo *replies*, but the client asked for every one of them — the analyzer sums,
over a sliding window of :data:`WINDOW` seconds (in :data:`BUCKET`-second buckets), the echo
payload bytes of each direction, the echo packets whose payload is over :data:`LARGE` bytes,
and the distinct sizes of those payloads. A pair whose window holds at least :data:`MIN_BYTES`
payload bytes in at least :data:`MIN_LARGE` large packets of at least :data:`MIN_SIZES`
distinct sizes — or whose requests' and replies' payload bytes differ by :data:`MIN_BYTES` or
more (a real echo reply carries its request's payload back: ping's replies mirror its
requests byte for byte, a tunnel's do not) —, with at least :data:`MIN_REQUESTS` requests
from the requester and :data:`MIN_LARGE` large packets, makes one
``network_icmp_echo`` event (``event.action: echo_payloads``, ``source`` = the requester), at
most once per pair per :data:`WINDOW` seconds.

Why those: ping sends one payload size (56 bytes by default, whatever ``-s`` says otherwise),
so monitoring pings, ``ping -s 1400`` MTU checks and even a one-size flood have one or two
distinct sizes; a path-MTU search (``tracepath``, ``ping -M do`` bisection) tries ten or so
sizes a few times each, far under :data:`MIN_BYTES`. A tunnel's payloads follow the data it
carries: many sizes, sustained. :data:`MIN_BYTES` over :data:`WINDOW` is 100 KB in 10 minutes,
about 170 bytes/s: a tunnel throttled 30 times under the volume rule's 5 KB/s is still seen.
Requiring requests from the requester means forged echo replies alone cannot name an address
that never sent any.

Bounds: :data:`MAX_PAIRS` pairs, the least recently active evicted first (counted in
``vedette_capture_table_overflows_total{table="icmp_echo_pairs"}``); :data:`MAX_SIZES` distinct
sizes remembered per pair (past that it counts as "many"). About 2 KB a pair: ~8 MB full.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from agent.events import Event, LogSource
from agent.netdecode.columns import PacketColumns
from agent.netdecode.layers import PROTO_ICMP, PROTO_ICMPV6
from agent.netevents.analyzers.base import ICMP, ICMP_PROBE, Analyzer, Packet
from agent.netevents.direction import ip_text
from agent.netevents.state import TrafficState

NETWORK_ICMP_ECHO: Final = LogSource("vedette", "network_icmp_echo")
WINDOW: Final = 600
BUCKET: Final = 60
LARGE: Final = 128
"""Echo payload bytes over which a packet counts as large (ping's default is 56)."""
MIN_BYTES: Final = 100_000
MIN_LARGE: Final = 100
MIN_SIZES: Final = 8
MIN_REQUESTS: Final = 10
MAX_PAIRS: Final = 4096
MAX_SIZES: Final = 64
REQUESTS: Final = {PROTO_ICMP: 8, PROTO_ICMPV6: 128}
REPLIES: Final = {PROTO_ICMP: 0, PROTO_ICMPV6: 129}


class EchoPair:
    """One requester → responder pair's window."""

    __slots__ = ("buckets", "reported", "sizes")

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}
        """Bucket start → [request payload bytes, reply payload bytes, large packets,
        requests, replies]."""
        self.sizes: dict[int, int] = {}
        """Large payload size → the last bucket it was seen in."""
        self.reported = -WINDOW
        """The second of the last event."""

    def add(self, bucket: int, size: int, request: bool, n: int = 1) -> None:
        counts = self.buckets.get(bucket)
        if counts is None:
            start = bucket - WINDOW + BUCKET
            for old in [b for b in self.buckets if b < start]:
                del self.buckets[old]
            counts = self.buckets[bucket] = [0, 0, 0, 0, 0]
        counts[0 if request else 1] += size * n
        counts[3 if request else 4] += n
        if size > LARGE:
            counts[2] += n
            sizes = self.sizes
            if size in sizes or len(sizes) < MAX_SIZES:
                sizes[size] = bucket
            else:  # full: forget a size out of the window, if any
                start = bucket - WINDOW + BUCKET
                stale = next((s for s, b in sizes.items() if b < start), None)
                if stale is not None:
                    del sizes[stale]
                    sizes[size] = bucket

    def totals(self, bucket: int) -> tuple[int, int, int, int, int, int]:
        """Request and reply payload bytes, large packets, requests, replies, distinct large
        sizes in the window."""
        start = bucket - WINDOW + BUCKET
        total = [0, 0, 0, 0, 0]
        for b, counts in self.buckets.items():
            if b >= start:
                for i in range(5):
                    total[i] += counts[i]
        sizes = sum(1 for b in self.sizes.values() if b >= start)
        return total[0], total[1], total[2], total[3], total[4], sizes


class IcmpEchoAnalyzer(Analyzer):
    name: ClassVar[str] = "icmp_echo"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_ICMP, PROTO_ICMPV6)

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.pairs: OrderedDict[tuple[bytes, bytes], EchoPair] = OrderedDict()
        self.touched: dict[tuple[bytes, bytes], int] = {}
        """Pairs with a large payload this second → their protocol (checked when it ends)."""
        state.on_second_end(self._second_end)

    bulk_kinds: ClassVar[tuple[int, ...]] = (ICMP, ICMP_PROBE)

    def count_bulk(self, cols: PacketColumns, rows: npt.NDArray[np.intp]) -> None:
        """What :meth:`packet` counts for count-only ICMP messages ``rows`` (Ethernet/IPv4
        without options: the ICMP header at byte 34), grouped by pair, second and size. Sizes
        are from the wire length (a capture's snap length may cut the payload)."""
        head = cols.head[rows]
        kind = head[:, 34]
        echo = (kind == 8) | (kind == 0)
        if not echo.any():
            return
        head, rows = head[echo], rows[echo]
        size = np.maximum(cols.wire[rows].astype(np.int64) - 42, 0)
        second = np.floor(cols.timestamps[rows]).astype(np.int64)
        src = head[:, 26:30].astype(np.int64)
        dst = head[:, 30:34].astype(np.int64)
        a = (src[:, 0] << 24) | (src[:, 1] << 16) | (src[:, 2] << 8) | src[:, 3]
        b = (dst[:, 0] << 24) | (dst[:, 1] << 16) | (dst[:, 2] << 8) | dst[:, 3]
        table = np.stack([a, b, head[:, 34].astype(np.int64), second, size], axis=1)
        groups, counts = np.unique(table, axis=0, return_counts=True)
        for (sa, da, icmp_type, sec, n_bytes), n in zip(groups.tolist(), counts.tolist(),
                                                        strict=True):
            self._count(sa.to_bytes(4, "big"), da.to_bytes(4, "big"), PROTO_ICMP, icmp_type,
                        sec, n_bytes, n)

    def packet(self, out: list[Event], pkt: Packet) -> None:
        self._count(pkt.src, pkt.dst, pkt.proto, pkt.sport, int(pkt.ts),
                    max(0, pkt.wire - pkt.l4 - 4), 1)  # l4: past type, code, checksum

    def _count(self, src: bytes, dst: bytes, proto: int, icmp_type: int, second: int,
               size: int, n: int) -> None:
        if icmp_type == REQUESTS.get(proto):
            key, request = (src, dst), True
        elif icmp_type == REPLIES.get(proto):
            key, request = (dst, src), False
        else:
            return
        pairs = self.pairs
        pair = pairs.get(key)
        if pair is None:
            if len(pairs) >= MAX_PAIRS:
                self.state.stats.table_overflows["icmp_echo_pairs"] += 1
                pairs.popitem(last=False)
            pair = pairs[key] = EchoPair()
        else:
            pairs.move_to_end(key)
        pair.add(second - second % BUCKET, size, request, n)
        if size > LARGE:
            self.touched[key] = proto

    def _second_end(self, segments: object, second: int) -> list[Event]:
        """The pairs with large payloads this second over every threshold: their events (at
        the second's end, whichever path counted their packets)."""
        touched, self.touched = self.touched, {}
        out: list[Event] = []
        bucket = second - second % BUCKET
        for key in sorted(touched):
            pair = self.pairs.get(key)
            if pair is None or second < pair.reported + WINDOW:
                continue
            asked, answered, large, requests, replies, sizes = pair.totals(bucket)
            nbytes = asked + answered
            if large >= MIN_LARGE and requests >= MIN_REQUESTS and (
                    (nbytes >= MIN_BYTES and sizes >= MIN_SIZES)
                    or abs(asked - answered) >= MIN_BYTES):
                pair.reported = second
                self.state.stats.events["icmp_echo"] += 1
                out.append(echo_event(second + 0.999999, key[0], key[1], touched[key], asked,
                                      answered, large, requests, replies, sizes,
                                      self.state.direction.of(key[0], key[1])))
        return out


def echo_event(ts: float, requester: bytes, responder: bytes, proto: int, asked: int,
               answered: int, large: int, requests: int, replies: int, sizes: int,
               direction: str) -> Event:
    """One ``network_icmp_echo`` event (field catalogue: docs/events.md)."""
    fields: dict[str, Any] = {
        "event.dataset": "network.icmp_echo",
        "event.action": "echo_payloads",
        "source.ip": ip_text(requester),
        "destination.ip": ip_text(responder),
        "network.type": "ipv4" if len(requester) == 4 else "ipv6",
        "network.transport": "icmp" if proto == PROTO_ICMP else "ipv6-icmp",
        "network.iana_number": proto,
        "network.direction": direction,
        "icmp_echo.request_bytes": asked,
        "icmp_echo.reply_bytes": answered,
        "icmp_echo.large_packets": large,
        "icmp_echo.requests": requests,
        "icmp_echo.replies": replies,
        "icmp_echo.sizes": sizes,
        "icmp_echo.window_seconds": WINDOW,
    }
    return Event(ts, NETWORK_ICMP_ECHO, fields)
