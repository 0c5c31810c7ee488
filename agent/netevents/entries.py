"""The entries of the traffic tables (:mod:`agent.netevents.state`), with named fields."""

from __future__ import annotations

import math

BITMAP_SLOTS = 4096
"""Linear-counting bitmap size per aggregate: distinct sources exact to a few percent up to
~10 000 per second, saturating at ``SATURATED``."""
SATURATED = int(BITMAP_SLOTS * math.log(BITMAP_SLOTS))


class Aggregate:
    """One destination's counters for the current second."""

    __slots__ = ("bytes", "echo", "packets", "rst", "sources", "syn", "synack")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.syn = 0
        self.synack = 0
        self.rst = 0
        self.echo = 0
        self.sources: bytearray | None = None
        """Linear-counting bitmap of the sources (allocated with the first one)."""

    def source_bitmap(self) -> bytearray:
        if self.sources is None:
            self.sources = bytearray(BITMAP_SLOTS)
        return self.sources

    def add_source(self, src: bytes) -> None:
        (self.sources or self.source_bitmap())[hash(src) & (BITMAP_SLOTS - 1)] = 1


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
