"""A batch of captured frames as columns: numpy arrays over one shared buffer.

The per-packet Python cost is what bounds a capture thread, so readers hand the processor whole
batches as columns instead of one tuple per frame: frame offsets into the buffer (a memory-mapped
capture file or a copied ring block), captured and wire lengths, timestamps, link types and the
first :data:`HEAD_BYTES` bytes of every frame as one ``(n, HEAD_BYTES)`` array — enough for the
Ethernet, IPv4 and TCP headers the processor classifies in bulk. A frame's full bytes are sliced
out only for the rare packets that need per-packet decoding (:meth:`PacketColumns.frame`).

:func:`chain_offsets` walks a length-linked record chain (pcap records, TPACKET_V3 packets)
without a Python-level loop: the offsets list feeds a pipeline of C iterators that reads each
record's length and appends the next record's offset to the same list.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from operator import add, itemgetter

import numpy as np
import numpy.typing as npt

HEAD_BYTES = 48
"""Leading bytes of each frame copied into :attr:`PacketColumns.head` (Ethernet 14 + IPv4 20 +
the TCP header up to and including the flag byte)."""

Buffer = bytes | mmap.mmap
"""Where the frames are: slicing either gives ``bytes``."""

IntArray = npt.NDArray[np.int64]

Frame = tuple[float, int, bytes, int]
"""``(timestamp, linktype, frame bytes, wire length)``: one frame as a plain tuple (a named tuple
costs a constructor call per packet)."""


@dataclass(frozen=True, slots=True)
class PacketColumns:
    """``n`` frames: their bytes stay in ``buffer``, their metadata is one array per column."""

    buffer: Buffer
    offsets: IntArray
    """Start of each frame in ``buffer``."""
    caplen: IntArray
    """Captured bytes of each frame."""
    wire: IntArray
    """Length on the wire (≥ ``caplen``)."""
    timestamps: npt.NDArray[np.float64]
    linktypes: IntArray
    head: npt.NDArray[np.uint8]
    """``(n, HEAD_BYTES)``: each frame's first bytes; past ``caplen`` the content is undefined."""

    def __len__(self) -> int:
        return len(self.offsets)

    def frame(self, i: int) -> bytes:
        """The captured bytes of frame ``i``."""
        start = int(self.offsets[i])
        return bytes(self.buffer[start:start + int(self.caplen[i])])

    def frames(self) -> list[Frame]:
        """The batch as :data:`Frame` tuples (tests, debugging)."""
        ts, links, wire = self.timestamps.tolist(), self.linktypes.tolist(), self.wire.tolist()
        return [(ts[i], links[i], self.frame(i), wire[i]) for i in range(len(self))]

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> PacketColumns:
        """Columns of already-separated frames (pcapng, hand-built tests): one joined buffer."""
        datas = [f[2] for f in frames]
        caplen = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
        offsets = np.zeros(len(datas), dtype=np.int64)
        if len(datas) > 1:
            np.cumsum(caplen[:-1], out=offsets[1:])
        buffer = b"".join(datas)
        return cls(
            buffer=buffer,
            offsets=offsets,
            caplen=caplen,
            wire=np.fromiter((f[3] for f in frames), dtype=np.int64, count=len(frames)),
            timestamps=np.fromiter((f[0] for f in frames), dtype=np.float64, count=len(frames)),
            linktypes=np.fromiter((f[1] for f in frames), dtype=np.int64, count=len(frames)),
            head=gather(np.frombuffer(buffer, dtype=np.uint8), offsets, HEAD_BYTES),
        )


def gather(buf: npt.NDArray[np.uint8], positions: IntArray, width: int) -> npt.NDArray[np.uint8]:
    """``width`` bytes at each position as one ``(n, width)`` array; zero-padded past the end."""
    limit = len(buf) - width
    if len(positions) and limit >= 0 and int(positions.max()) <= limit:
        rows: npt.NDArray[np.uint8] = np.lib.stride_tricks.sliding_window_view(buf, width)[
            positions]
        return rows
    # Some rows run past the end of the buffer: gather those from a zero-padded copy of the tail.
    out = np.zeros((len(positions), width), dtype=np.uint8)
    inside = positions <= limit
    if limit >= 0:
        out[inside] = np.lib.stride_tricks.sliding_window_view(buf, width)[positions[inside]]
    tail = np.flatnonzero(~inside)
    if len(tail):
        base = max(limit, 0)
        padded = np.zeros(len(buf) - base + width, dtype=np.uint8)
        padded[:len(buf) - base] = buf[base:]
        window = np.lib.stride_tricks.sliding_window_view(padded, width)
        out[tail] = window[np.minimum(positions[tail], len(buf)) - base]
    return out


def chain_offsets(
    buffer: Buffer, first: int, count: int, length: struct.Struct, extra: int
) -> list[int]:
    """Offsets of up to ``count`` + 1 linked records starting at ``first``.

    The record at ``off`` is followed by the one at ``off + extra + length.unpack_from(buffer,
    off)[0]``. The walk stops early where a length can no longer be read (the buffer ends); the
    caller validates the offsets it got (bounds, plausible lengths) before trusting them.
    """
    offsets = [first]
    lengths = map(itemgetter(0), map(length.unpack_from, repeat(buffer), iter(offsets)))
    following = map(add, map(add, iter(offsets), repeat(extra)), lengths)
    try:
        offsets.extend(islice(following, count))
    except struct.error:
        pass  # the last offset's length field lies past the end of the buffer
    return offsets
