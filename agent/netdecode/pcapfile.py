"""Fast reader for pcap and pcapng capture files (no scapy on this path).

The file is memory-mapped. :meth:`CaptureReader.columns` hands out
:class:`~agent.netdecode.columns.PacketColumns` batches — the fast path: record starts found by
the lane walk of :mod:`agent.netdecode.pcapwalk` (or C iterators), headers and frame heads
gathered by numpy, frame bytes left in the mapping. :meth:`CaptureReader.batches` and iteration
give ``(timestamp, linktype, frame, wire_length)`` tuples (tests, tools, pcapng). Supported:
classic pcap in both byte orders with micro- or nanosecond timestamps, and pcapng (section
header, interface description with ``if_tsresol``, enhanced and simple packet blocks, the
obsolete packet block; other block types are skipped).

A bogus header raises :class:`CaptureFormatError` naming the file, offset and reason. A record
cut short at the end of the file (a capture still being written, or truncated by a copy) ends
the iteration and is counted in :attr:`CaptureReader.truncated_records`, never a crash.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from agent.netdecode.columns import HEAD_BYTES, Frame, PacketColumns, chain_offsets, gather
from agent.netdecode.pcapwalk import region_starts

MAX_RECORD_BYTES = 256 * 1024
"""A record longer than this is treated as corruption (real snap lengths are ≤ 262144)."""

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_NG_IDB, _NG_EPB, _NG_SPB, _NG_OPB = 1, 6, 3, 2


MAX_TIMESTAMP = float(1 << 32)
"""The latest plausible packet time (2106, where classic pcap's 32-bit seconds end)."""


class RawPacket(NamedTuple):
    """A :data:`Frame` with names, for code that builds frames by hand (tests, tools)."""

    timestamp: float
    linktype: int
    data: bytes
    wire_length: int


class CaptureFormatError(ValueError):
    """The file is not a capture we can read; ``str()`` names file, offset and reason."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CaptureReader:
    """Iterate the packets of one pcap/pcapng file; use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.truncated_records = 0
        self.skipped_blocks = 0
        self.bad_timestamps = 0
        """Records skipped for a timestamp past :data:`MAX_TIMESTAMP` (a hostile or broken
        ``if_tsresol``: one tick per second gives ~2^58 s, which no clock downstream holds)."""
        self.packets_read = 0
        self.bytes_total = 0
        with open(self.path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 12:
                raise CaptureFormatError(self.path, 0, f"file too short ({size} bytes)")
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.bytes_total = size
        head = self._mm[:4]
        if head in _PCAP_MAGICS:
            self.format = "pcap"
        elif struct.unpack("<I", head)[0] == _PCAPNG_SHB:
            self.format = "pcapng"
        else:
            self.close()
            raise CaptureFormatError(
                self.path, 0, f"not a pcap or pcapng file (magic {head.hex()})"
            )
        self.position = 0
        self._released = 0

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._mm.closed:
            self._mm.close()

    def batches(self, size: int = 4096) -> Iterator[list[Frame]]:
        """Packets in lists of up to ``size``."""
        if self.format == "pcap":
            yield from self._pcap(size)
            return
        batch: list[Frame] = []
        for pkt in self._pcapng():
            batch.append(pkt)
            if len(batch) >= size:
                yield self._done(batch)
                batch = []
        if batch:
            yield self._done(batch)

    def columns(self, size: int = 8192) -> Iterator[PacketColumns]:
        """Packets in :class:`PacketColumns` batches of up to ``size`` (the fast path)."""
        if self.format == "pcap":
            yield from self._pcap_columns(size)
            return
        for batch in self.batches(size):
            yield PacketColumns.from_frames(batch)

    def _done(self, batch: list[Frame]) -> list[Frame]:
        self.packets_read += len(batch)
        self._release()
        return batch

    def _release(self, upto: int | None = None) -> None:
        """Drop the page cache mapping of what was already read (keeps the RSS flat).

        ``upto`` (default :attr:`position`) must not lie past bytes a consumer still reads:
        pages dropped and read again would stay resident.
        """
        done = (self.position if upto is None else upto) & ~(mmap.PAGESIZE - 1)
        if done > self._released + (8 << 20):
            self._mm.madvise(mmap.MADV_DONTNEED, self._released, done - self._released)
            self._released = done

    def __iter__(self) -> Iterator[Frame]:
        for batch in self.batches():
            yield from batch

    # ------------------------------------------------------------------ classic pcap

    def _pcap_header(self) -> tuple[str, float, int]:
        """Byte order, timestamp scale and link type of a classic pcap global header."""
        mm = self._mm
        order, scale = _PCAP_MAGICS[mm[:4]]
        if len(mm) < 24:
            raise CaptureFormatError(self.path, 0, "pcap global header cut short")
        major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(
            order + "HHiIII", mm, 4
        )
        if major != 2:
            raise CaptureFormatError(self.path, 4, f"unsupported pcap version {major}")
        return order, scale, network & 0x0FFFFFFF

    def _pcap(self, size: int) -> Iterator[list[Frame]]:
        mm = self._mm
        order, scale, linktype = self._pcap_header()
        unpack = struct.Struct(order + "IIII").unpack_from
        off = 24
        end = len(mm)
        while off + 16 <= end:
            batch: list[Frame] = []
            append = batch.append
            for _ in range(size):
                if off + 16 > end:
                    break
                sec, frac, incl, orig = unpack(mm, off)
                start = off + 16
                stop = start + incl
                if incl > MAX_RECORD_BYTES or stop > end:
                    break
                append((sec + frac * scale, linktype, mm[start:stop], orig))
                off = stop
            self.position = off
            if batch:
                yield self._done(batch)
            if off + 16 <= end and (len(batch) < size):
                incl = unpack(mm, off)[2]
                if incl > MAX_RECORD_BYTES:
                    raise CaptureFormatError(
                        self.path, off, f"record length {incl} exceeds {MAX_RECORD_BYTES} (corrupt)"
                    )
                self.truncated_records += 1
                break
        if off != end and off + 16 > end:
            self.truncated_records += 1
        self.position = end

    def _pcap_columns(self, size: int) -> Iterator[PacketColumns]:
        """Classic pcap as columns: the record chain is walked in C, headers gathered by numpy.

        Same outcomes as :meth:`_pcap`: a record cut short at the end is counted in
        :attr:`truncated_records`, an implausible record length raises
        :class:`CaptureFormatError` after the records before it were handed out.
        """
        mm = self._mm
        order, scale, linktype = self._pcap_header()
        length = struct.Struct(order + "8xI")
        u32 = np.dtype(order + "u4")
        subsecond_limit = round(1 / scale)
        end = len(mm)
        off = 24
        while off + 16 <= end:
            words = np.ndarray((end - 3,), dtype=u32, buffer=mm, strides=(1,))
            starts = region_starts(mm, words, off, order == "<", MAX_RECORD_BYTES,
                                   subsecond_limit)
            del words  # no buffer export may outlive a yield: close() must work
            walked_all = True
            if starts is None:
                starts = np.array(chain_offsets(mm, off, size, length, 16), dtype=np.int64)
                walked_all = len(starts) == size + 1
            # Record k spans starts[k]..starts[k+1]; keep the prefix that is whole and sane.
            records, stops = starts[:-1], starts[1:]
            bad = (stops > end) | (stops - records - 16 > MAX_RECORD_BYTES)
            good = int(np.argmax(bad)) if bad.any() else len(records)
            off = int(starts[good])
            for chunk in range(0, good, size):
                batch = records[chunk:min(chunk + size, good)]
                buf = np.frombuffer(mm, dtype=np.uint8)
                rows = gather(buf, batch, 16 + HEAD_BYTES)
                del buf
                header = rows[:, :16].copy().view(u32).astype(np.int64)
                self._release(int(batch[0]))  # the frames of this batch are read later
                self.position = int(starts[chunk + len(batch)])
                self.packets_read += len(batch)
                yield PacketColumns(
                    buffer=mm,
                    offsets=batch + 16,
                    caplen=header[:, 2],
                    wire=header[:, 3],
                    timestamps=header[:, 0] + header[:, 1] * scale,
                    linktypes=np.full(len(batch), linktype, dtype=np.int64),
                    head=rows[:, 16:],
                )
            if good < len(records) or not walked_all:
                break
        if off + 16 <= end:
            incl = length.unpack_from(mm, off)[0]
            if incl > MAX_RECORD_BYTES:
                raise CaptureFormatError(
                    self.path, off, f"record length {incl} exceeds {MAX_RECORD_BYTES} (corrupt)"
                )
            self.truncated_records += 1
        elif off != end:
            self.truncated_records += 1
        self.position = end

    # ------------------------------------------------------------------ pcapng

    def _pcapng(self) -> Iterator[Frame]:
        mm = self._mm
        end = len(mm)
        off = 0
        order = "<"
        interfaces: list[tuple[int, float]] = []
        while off + 12 <= end:
            btype = struct.unpack_from(order + "I", mm, off)[0]
            if btype == _PCAPNG_SHB:
                bom = mm[off + 8:off + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise CaptureFormatError(self.path, off, "pcapng byte-order magic invalid")
                interfaces = []
            blen = struct.unpack_from(order + "I", mm, off + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_RECORD_BYTES + 64:
                raise CaptureFormatError(self.path, off, f"pcapng block length {blen} invalid")
            if off + blen > end:
                self.truncated_records += 1
                break
            body = off + 8
            if btype == _NG_EPB and blen >= 32:
                ifid, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", mm, body)
                pkt = self._ng_packet(interfaces, ifid, hi, lo, cap, orig, body + 20, off + blen)
                if pkt is not None:
                    yield pkt
            elif btype == _NG_SPB and blen >= 16:
                orig = struct.unpack_from(order + "I", mm, body)[0]
                cap = min(orig, blen - 16)
                if interfaces:
                    yield (0.0, interfaces[0][0], mm[body + 4:body + 4 + cap], orig)
            elif btype == _NG_OPB and blen >= 32:
                ifid, _drops, hi, lo, cap, orig = struct.unpack_from(order + "HHIIII", mm, body)
                pkt = self._ng_packet(interfaces, ifid, hi, lo, cap, orig, body + 20, off + blen)
                if pkt is not None:
                    yield pkt
            elif btype == _NG_IDB and blen >= 20:
                linktype = struct.unpack_from(order + "H", mm, body)[0]
                interfaces.append((linktype, _tsresol(mm, order, body + 8, off + blen - 4)))
            elif btype != _PCAPNG_SHB:
                self.skipped_blocks += 1
            off += blen
            self.position = off
        else:
            if off != end:
                self.truncated_records += 1
        self.position = end

    def _ng_packet(
        self,
        interfaces: list[tuple[int, float]],
        ifid: int,
        hi: int,
        lo: int,
        cap: int,
        orig: int,
        start: int,
        block_end: int,
    ) -> Frame | None:
        if ifid >= len(interfaces) or start + cap > block_end:
            self.skipped_blocks += 1
            return None
        linktype, scale = interfaces[ifid]
        ts = ((hi << 32) | lo) * scale
        if not ts <= MAX_TIMESTAMP:
            self.bad_timestamps += 1
            return None
        return (ts, linktype, self._mm[start:start + cap], orig)


def _tsresol(mm: mmap.mmap, order: str, off: int, end: int) -> float:
    """The ``if_tsresol`` option of an interface description block (default: microseconds)."""
    while off + 4 <= end:
        code, length = struct.unpack_from(order + "HH", mm, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            raw = mm[off + 4]
            return 2.0 ** -(raw & 0x7F) if raw & 0x80 else 10.0 ** -raw
        off += 4 + ((length + 3) & ~3)
    return 1e-6
