"""IP fragment reassembly (IPv4 and IPv6), bounded, with the overlap policy of the Linux host.

A scan in fragments is a scan: ``nmap -f`` cuts each probe into 8-byte fragments so the first
one does not even hold the TCP flags. :class:`Reassembler` collects the fragments of each
datagram (key: addresses, protocol for IPv4, identification) and returns the whole datagram as
a raw IP packet once every byte from 0 to the end (the fragment without "more fragments") is
there; the processor then decodes it like any other packet.

**Overlap policy: ``linux``** (the agent watches the host it runs on, so it reassembles the way
that host does). Since Linux 4.19 (CVE-2018-5391) an overlapping IPv4 fragment discards the
whole datagram, and RFC 5722 requires the same of IPv6. A fragment wholly inside bytes already
held (an exact retransmission, or a sub-range) is a duplicate and is ignored: the first copy
wins. Anything else that overlaps discards the datagram and is counted as ``fragment_overlap``
— the classic IDS-evasion technique (different bytes for the sensor and the target, Ptacek &
Newsham 1998), and never produced by a real IP stack. For comparison, Suricata's ``first``
policy keeps the first copy of every byte, ``bsd`` (its default) and ``linux`` prefer the later
fragment in some overlaps; no policy is right for every target, which is why overlaps are
reported rather than trusted. An inconsistent end (two last fragments, data past the end) is
treated as an overlap.

**Bounds.** At most ``max_datagrams`` datagrams in progress, ``max_bytes`` buffered in all and
``max_fragments`` fragments per datagram; a datagram that is not whole ``timeout`` seconds
(packet time) after its first fragment is dropped (Linux: ``ipfrag_time`` 30 s,
``ipfrag_high_thresh`` 4 MiB). When the table is full, a new datagram **evicts the oldest ones**
(by first fragment, counted as ``fragment_evicted``) — the way Suricata reuses its oldest defrag
trackers. Refusing new datagrams instead (the table's earlier policy) let a slow flood of
never-finished first fragments (4096 renewed every 30 s: about 140 packets/s) blind
reassembly, so every later ``nmap -f`` probe went unseen. With eviction a flood can only push a
real datagram out by sending ``max_datagrams`` new datagrams between its first and last
fragment (an ``nmap -f`` probe's three fragments leave within microseconds: millions of packets
a second). Only a single datagram larger than all of ``max_bytes`` is refused. Every eviction,
refusal and timeout is counted in :attr:`Reassembler.counts`.

Hand-written (no library reassembles from raw bytes without per-packet objects): scapy's
``defragment`` works on parsed packets and has no bounds.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

MAX_DATAGRAM: Final = 65535
OVERLAP: Final = "fragment_overlap"
DUPLICATE: Final = "fragment_duplicate"
TIMEOUT: Final = "fragment_timeout"
TABLE_FULL: Final = "fragment_table_full"
EVICTED: Final = "fragment_evicted"
TOO_MANY: Final = "fragment_too_many"
TOO_LARGE: Final = "fragment_too_large"

FragmentKey = tuple[bytes, bytes, int, int]
"""(source, destination, IPv4 protocol or -1 for IPv6, identification)."""


class _Datagram:
    __slots__ = ("end", "first_ts", "header", "pieces", "size", "tiny")

    def __init__(self, first_ts: float) -> None:
        self.first_ts = first_ts
        self.pieces: list[tuple[int, bytes]] = []
        self.end = -1
        """Length of the whole payload, once the last fragment arrived."""
        self.header = b""
        """The IP header of the fragment at offset 0 (IPv6: the fixed header)."""
        self.size = 0
        self.tiny = False


class Reassembled:
    """A whole datagram: ``packet`` is raw IP (LINKTYPE_RAW), made of ``fragments`` fragments."""

    __slots__ = ("fragments", "packet", "tiny")

    def __init__(self, packet: bytes, fragments: int, tiny: bool) -> None:
        self.packet = packet
        self.fragments = fragments
        self.tiny = tiny
        """The first fragment did not hold the whole transport header (``nmap -f``)."""


class Reassembler:
    """Fragments in, whole datagrams out; every drop is counted in :attr:`counts`."""

    def __init__(self, max_datagrams: int = 4096, max_bytes: int = 4 << 20,
                 timeout: float = 30.0, max_fragments: int = 128,
                 counts: Counter[str] | None = None) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_fragments = max_fragments
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._table: dict[FragmentKey, _Datagram] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._table)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def expire(self, now: float) -> None:
        """Drop datagrams older than the timeout (the table is in order of first fragment)."""
        table = self._table
        limit = now - self.timeout
        while table:
            key = next(iter(table))
            dg = table[key]
            if dg.first_ts > limit:
                return
            del table[key]
            self._bytes -= dg.size
            self.counts[TIMEOUT] += 1

    def add(self, ts: float, key: FragmentKey, offset: int, more: bool, header: bytes,
            payload: bytes, transport_header: int) -> Reassembled | str | None:
        """One fragment: payload at byte ``offset``; ``header`` the IP header to rebuild with
        when ``offset`` is 0. ``transport_header`` is the minimum transport header length of
        the protocol (20 for TCP) for the tiny-fragment check.

        Returns the whole datagram, a drop reason (:data:`OVERLAP`, ...) when this fragment
        ended the datagram or was refused, or ``None`` while it is incomplete.
        """
        if self._table:
            self.expire(ts)
        end = offset + len(payload)
        if end > MAX_DATAGRAM:
            self.counts[TOO_LARGE] += 1
            self._discard(key)
            return TOO_LARGE
        dg = self._table.get(key)
        if dg is None:
            if len(self._table) >= self.max_datagrams:
                self._evict_oldest()
            dg = self._table[key] = _Datagram(ts)
        if self._bytes + len(payload) > self.max_bytes and not self._make_room(key, payload):
            self.counts[TABLE_FULL] += 1
            self._discard(key)
            return TABLE_FULL
        if not more:
            if (dg.end >= 0 and dg.end != end) or any(o + len(p) > end for o, p in dg.pieces):
                return self._overlap(key)
            dg.end = end
        elif dg.end >= 0 and end > dg.end:
            return self._overlap(key)
        for o, p in dg.pieces:
            o_end = o + len(p)
            if offset < o_end and o < end:
                if o <= offset and end <= o_end:  # wholly inside: a duplicate, first wins
                    self.counts[DUPLICATE] += 1
                    return None
                return self._overlap(key)
        if len(dg.pieces) >= self.max_fragments:
            self.counts[TOO_MANY] += 1
            self._discard(key)
            return TOO_MANY
        dg.pieces.append((offset, payload))
        dg.size += len(payload)
        self._bytes += len(payload)
        if offset == 0:
            dg.header = header
            dg.tiny = len(payload) < transport_header
        if dg.end < 0 or not dg.header:
            return None
        covered = sum(len(p) for _, p in dg.pieces)
        if covered != dg.end:
            return None
        del self._table[key]
        self._bytes -= dg.size
        dg.pieces.sort()
        return Reassembled(_rebuild(dg.header, b"".join(p for _, p in dg.pieces)),
                           len(dg.pieces), dg.tiny)

    def _evict_oldest(self) -> None:
        table = self._table
        dg = table.pop(next(iter(table)))
        self._bytes -= dg.size
        self.counts[EVICTED] += 1

    def _make_room(self, key: FragmentKey, payload: bytes) -> bool:
        """Evict the oldest other datagrams until ``payload`` fits in ``max_bytes``; False
        when it cannot (this datagram alone is too large)."""
        table = self._table
        while self._bytes + len(payload) > self.max_bytes:
            victim = next((k for k in table if k != key), None)
            if victim is None:
                return False
            dg = table.pop(victim)
            self._bytes -= dg.size
            self.counts[EVICTED] += 1
        return True

    def _overlap(self, key: FragmentKey) -> str:
        self.counts[OVERLAP] += 1
        self._discard(key)
        return OVERLAP

    def _discard(self, key: FragmentKey) -> None:
        dg = self._table.pop(key, None)
        if dg is not None:
            self._bytes -= dg.size


def _rebuild(header: bytes, payload: bytes) -> bytes:
    """An unfragmented datagram: IPv4 with its total length set and the fragment field
    cleared; IPv6 with the payload length set (``header`` already names the payload's next
    header)."""
    if header[0] >> 4 == 4:
        total = len(header) + len(payload)
        return (header[:2] + total.to_bytes(2, "big") + header[4:6] + b"\x00\x00"
                + header[8:] + payload)
    return header[:4] + len(payload).to_bytes(2, "big") + header[6:] + payload
