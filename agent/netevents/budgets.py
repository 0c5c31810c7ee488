"""Per-second event budgets of the packet path, fair under floods.

Per-packet events (TCP control packets, ICMP probes and errors, DNS messages, ARP packets)
are what the rules read one by one; their rate must stay bounded whatever the packet rate.
Each second, at most ``max_events_per_destination`` control-packet events toward one
(address, port), ``max_events_per_source`` from one address, ``max_dns_events_per_client``
about one DNS client, ``max_arp_events_per_mac`` from one ARP sender.

``max_events_per_second`` bounds each class of them, and is shared out so that one flood cannot
spend it for everyone (a first-come budget let a spoofed SYN flood to random ports hide a scan):

* **per class**: control packets (TCP, ICMP, evasion events) and DNS/ARP each have a budget
  of their own of that size — a SYN flood cannot silence DNS tunnel detection, nor a DNS flood
  the scans;
* **per source**, within the control class: a source's first attempt of the second draws on
  the *new sources* pool (:data:`NEW_SOURCE_SHARE` of the class), its later attempts on the
  *known sources* pool. A spoofed flood is all first attempts: it spends the new-sources pool
  and nothing else, while a scanner — one source, many probes — keeps drawing on the other.
  Attempts are counted in a two-row count-min sketch of 2^20 slots each (2 MiB, cleared every
  second), so a flood from millions of addresses cannot overflow it; a flood packet passes for
  a known source only when both its slots were hit before (about 0.3 % of packets at 50 k
  spoofed sources per second). The slots come from a keyed multiply-add-shift hash
  (:func:`sketch_slots`; a per-process random key, so an attacker cannot pick addresses that
  collide) that numpy computes for a whole batch too (:func:`sketch_slots_v4`): the bulk
  path can tell which SYNs the budgets refuse without a Python step per packet;
* the heaviest hitters are sampled: a source still gets at most ``max_events_per_source``.

The per-key budgets are checked first, the class pools after (a packet the per-key budgets
refuse never spends or counts against a pool). Every refusal is counted in
``stats.suppressed``; refusals by a class pool also in
``stats.over_global_budget`` (detection was blind for someone, not thinned) and, by pool, in
``stats.over_budget_pools`` (``new_sources``, ``known_sources``, ``dns_arp``).
"""

from __future__ import annotations

import secrets
from typing import Final

import numpy as np
import numpy.typing as npt

from agent.config import NetworkSection
from agent.netevents.summaries import ProcessorStats

NEW_SOURCE_SHARE: Final = 0.25
SKETCH_BITS: Final = 20
_M64: Final = (1 << 64) - 1
_SLOT: Final = (1 << SKETCH_BITS) - 1
_SHIFT: Final = 64 - SKETCH_BITS
_WORDS: Final = 4
"""Addresses are hashed as up to four 32-bit words (IPv4: one; IPv6: four)."""


def _key() -> tuple[int, ...]:
    return tuple(secrets.randbits(64) for _ in range(_WORDS + 1))


_KEY1: Final = _key()
_KEY2: Final = _key()
"""Per-process random keys of the two rows: ``(a_0 .. a_3, b)``."""
_A1, _B1, _A2, _B2 = _KEY1[0], _KEY1[_WORDS], _KEY2[0], _KEY2[_WORDS]


def _row_hash(address: bytes, key: tuple[int, ...]) -> int:
    """``((b + sum(a_k * w_k)) mod 2^64) >> (64 - SKETCH_BITS)`` over the address's 32-bit
    words ``w_k`` (vector multiply-add-shift: universal for a random key; the top bits of a
    64-bit product of a 32-bit word are what numpy computes, wrapping, for a whole batch)."""
    if len(address) == 4:
        return ((key[0] * int.from_bytes(address, "big") + key[_WORDS]) & _M64) >> _SHIFT
    acc = key[_WORDS]
    for k in range(0, min(len(address), 4 * _WORDS), 4):
        acc += key[k // 4] * int.from_bytes(address[k:k + 4], "big")
    # Longer keys (never an IP address) fold their tail into the last word's multiplier.
    if len(address) > 4 * _WORDS:
        acc += key[_WORDS - 1] * (int.from_bytes(address[4 * _WORDS:], "big") & 0xFFFFFFFF)
    return (acc & _M64) >> _SHIFT


def sketch_slots(address: bytes) -> tuple[int, int]:
    """The sketch slot of ``address`` in each row."""
    return _row_hash(address, _KEY1), _row_hash(address, _KEY2)


def sketch_slots_v4(
    addresses: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """:func:`sketch_slots` of IPv4 addresses (as big-endian 32-bit integers), for a batch."""
    x = addresses.astype(np.uint64)
    shift = np.uint64(_SHIFT)
    with np.errstate(over="ignore"):
        i = (x * np.uint64(_KEY1[0]) + np.uint64(_KEY1[_WORDS])) >> shift
        j = (x * np.uint64(_KEY2[0]) + np.uint64(_KEY2[_WORDS])) >> shift
    return i.astype(np.intp), j.astype(np.intp)


def _hit_before(row: npt.NDArray[np.uint8], slots: npt.NDArray[np.intp]
                ) -> npt.NDArray[np.bool_]:
    """Whether each of ``slots`` was hit before its turn; adds the batch's hits to ``row``."""
    hit: npt.NDArray[np.bool_] = row[slots] > 0
    if not len(slots):
        return hit
    unique, first, counts = np.unique(slots, return_index=True, return_counts=True)
    later = np.ones(len(slots), dtype=np.bool_)
    later[first] = False
    row[unique] = np.minimum(row[unique].astype(np.int64) + counts, 255).astype(np.uint8)
    return hit | later


class Budgets:
    """What may still be made this second; :meth:`reset` when a second begins."""

    def __init__(self, settings: NetworkSection, stats: ProcessorStats) -> None:
        self.stats = stats
        self.max_destination = settings.max_events_per_destination
        self.max_source = settings.max_events_per_source
        self.max_total = settings.max_events_per_second
        self.max_new = max(1, int(self.max_total * NEW_SOURCE_SHARE))
        self.max_known = max(1, self.max_total - self.max_new)
        self.max_aux = self.max_total
        self.max_keys = settings.max_tracked_keys
        self.emitted = 0
        self.new = 0
        self.known = 0
        self.aux = 0
        self._row1 = bytearray(1 << SKETCH_BITS)
        self._row2 = bytearray(1 << SKETCH_BITS)
        self._dirty = False
        self._destinations: dict[tuple[bytes, int], int] = {}
        self._sources: dict[bytes, int] = {}
        self._aux: dict[bytes, int] = {}

    def reset(self) -> None:
        self.emitted = self.new = self.known = self.aux = 0
        if self._dirty:
            self._row1 = bytearray(1 << SKETCH_BITS)
            self._row2 = bytearray(1 << SKETCH_BITS)
            self._dirty = False
        self._destinations = {}
        self._sources = {}
        self._aux = {}

    def global_spent(self) -> bool:
        """Whether every class pool is spent (nothing more can be emitted this second)."""
        return (self.new >= self.max_new and self.known >= self.max_known
                and self.aux >= self.max_aux)

    def seen(self, src: bytes) -> bool:
        """Count an attempt of ``src``; whether it attempted before this second."""
        i, j = sketch_slots(src)
        row1, row2 = self._row1, self._row2
        a, b = row1[i], row2[j]
        if a < 255:
            row1[i] = a + 1
        if b < 255:
            row2[j] = b + 1
        self._dirty = True
        return a > 0 and b > 0

    def sketch(self) -> tuple[bytes, bytes]:
        """The sketch's two rows (a copy)."""
        return bytes(self._row1), bytes(self._row2)

    def seen_v4(self, addresses: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        """Count an attempt of each IPv4 address in turn, for a batch; whether each attempted
        before (this second, or earlier in the batch) — what :meth:`seen` tells one by one,
        with the same sketch afterwards (slots saturate at 255; only "hit before" is read)."""
        i, j = sketch_slots_v4(addresses)
        row1 = np.frombuffer(self._row1, dtype=np.uint8)
        row2 = np.frombuffer(self._row2, dtype=np.uint8)
        seen: npt.NDArray[np.bool_] = _hit_before(row1, i) & _hit_before(row2, j)
        if len(addresses):
            self._dirty = True
        return seen

    def _refuse(self, pool: str) -> bool:
        stats = self.stats
        stats.suppressed += 1
        stats.over_global_budget += 1
        stats.over_budget_pools[pool] += 1
        return False

    def destination_spent(self, dst: bytes, port: int) -> bool:
        return self._destinations.get((dst, port), 0) >= self.max_destination

    def source_spent(self, src: bytes) -> bool:
        return self._sources.get(src, 0) >= self.max_source

    def aux_spent(self, key: bytes, limit: int) -> bool:
        return self._aux.get(key, 0) >= limit

    def admit(self, src: bytes, dst: bytes, port: int) -> bool:
        """One control-packet event from ``src`` toward (``dst``, ``port``)?

        The per-key budgets are checked first: what they refuse is a flood thinned out by
        design and never touches the class pools (nor the sketch)."""
        dkey = (dst, port)
        d = self._destinations.get(dkey, 0)
        s = self._sources.get(src, 0)
        if d >= self.max_destination or s >= self.max_source:
            self.stats.suppressed += 1
            return False
        # self.seen(src), inline: this runs for every control packet
        if len(src) == 4:  # sketch_slots(), inline
            x = int.from_bytes(src, "big")  # bits 44..63 of the sum: the mod 2^64 >> 44
            i = (_A1 * x + _B1) >> _SHIFT & _SLOT
            j = (_A2 * x + _B2) >> _SHIFT & _SLOT
        else:
            i, j = sketch_slots(src)
        row1, row2 = self._row1, self._row2
        a, b = row1[i], row2[j]
        if a < 255:
            row1[i] = a + 1
        if b < 255:
            row2[j] = b + 1
        self._dirty = True
        if a and b:
            if self.known >= self.max_known:
                return self._refuse("known_sources")
            self.known += 1
        else:
            if self.new >= self.max_new:
                return self._refuse("new_sources")
            self.new += 1
        if d or len(self._destinations) < self.max_keys:
            self._destinations[dkey] = d + 1
        if s or len(self._sources) < self.max_keys:
            self._sources[src] = s + 1
        self.emitted += 1
        return True

    def admit_aux(self, key: bytes, limit: int) -> bool:
        """Budget of DNS clients and ARP senders (their own table and class pool)."""
        c = self._aux.get(key, 0)
        if c >= limit:
            self.stats.suppressed += 1
            return False
        if self.aux >= self.max_aux:
            return self._refuse("dns_arp")
        if c or len(self._aux) < self.max_keys:
            self._aux[key] = c + 1
        self.aux += 1
        self.emitted += 1
        return True
