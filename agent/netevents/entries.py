"""The entries of the traffic tables (:mod:`agent.netevents.state`), with named fields."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BITMAP_SLOTS = 4096
"""Linear-counting bitmap size per aggregate: distinct sources exact to a few percent up to
~10 000 per second, saturating at ``SATURATED``."""
SATURATED = int(BITMAP_SLOTS * math.log(BITMAP_SLOTS))
_MIX = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1


def source_slot(src: bytes) -> int:
    """The bitmap slot of a source address: the top 12 bits of a 64-bit multiplicative hash
    (Fibonacci hashing), which numpy computes the same way for a whole column of IPv4
    addresses (:func:`source_slots`)."""
    x = int.from_bytes(src, "big")
    if x >> 64:
        x = (x ^ (x >> 64)) & _U64
    return ((x * _MIX) & _U64) >> 52


def source_slots(addresses: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """:func:`source_slot` of many IPv4 addresses (as big-endian integers)."""
    slots: npt.NDArray[np.int64] = (
        (addresses.astype(np.uint64) * np.uint64(_MIX)) >> np.uint64(52)).astype(np.int64)
    return slots


class Aggregate:
    """One destination's counters for the current second."""

    __slots__ = ("bytes", "echo", "first_source", "packets", "rst", "sources", "syn", "synack")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.syn = 0
        self.synack = 0
        self.rst = 0
        self.echo = 0
        self.first_source: bytes | None = None
        """The one source seen, until a second one allocates :attr:`sources`."""
        self.sources: bytearray | None = None
        """Linear-counting bitmap of the sources (4 KiB: only once there are two; a flood to
        random ports makes tens of thousands of aggregates with one source each)."""

    def source_bitmap(self) -> bytearray:
        if self.sources is None:
            self.sources = bytearray(BITMAP_SLOTS)
            if self.first_source is not None:
                self.sources[source_slot(self.first_source)] = 1
        return self.sources

    def add_source(self, src: bytes) -> None:
        sources = self.sources
        if sources is None:
            first = self.first_source
            if first is None:
                self.first_source = src
                return
            if first == src:
                return
            sources = self.source_bitmap()
        if len(src) == 4:  # source_slot(), inline for the common case
            sources[((int.from_bytes(src, "big") * _MIX) & _U64) >> 52] = 1
        else:
            sources[source_slot(src)] = 1

    def source_count(self) -> int:
        """Linear counting: ``-m ln(zero slots / m)``."""
        if self.sources is None:
            return 0 if self.first_source is None else 1
        zeros = self.sources.count(0)
        if zeros == 0:
            return SATURATED
        return round(-BITMAP_SLOTS * math.log(zeros / BITMAP_SLOTS))


class Flow:
    """One source → destination flow of the current interval."""

    __slots__ = ("bytes", "first", "last", "packets")

    def __init__(self, packets: int, nbytes: int, first: float, last: float) -> None:
        self.packets = packets
        self.bytes = nbytes
        self.first = first
        self.last = last


class Counts:
    """Packets and bytes (the ordinary segments of one connection in the current second)."""

    __slots__ = ("bytes", "packets")

    def __init__(self, packets: int, nbytes: int) -> None:
        self.packets = packets
        self.bytes = nbytes
