"""An AF_PACKET socket with a TPACKET_V3 memory-mapped receive ring, bound to one interface.

The kernel fills fixed-size blocks with packets and hands a block over when it is full or when
``block_timeout_ms`` has passed (so a lone probe is seen within that time). Python copies the
used part of each block, gives it back by clearing its status word — no system call per packet,
and one ``poll`` per block at most — and reads the copy as :class:`PacketColumns`.

Layouts (linux/if_packet.h):

* ``tpacket_block_desc``: version u32, offset_to_priv u32, then ``tpacket_hdr_v1``:
  block_status u32 @8, num_pkts u32 @12, offset_to_first_pkt u32 @16, blk_len u32 @20, …
* ``tpacket3_hdr``: tp_next_offset u32 @0, tp_sec u32 @4, tp_nsec u32 @8, tp_snaplen u32 @12,
  tp_len u32 @16, tp_status u32 @20, tp_mac u16 @24, tp_net u16 @26, …
"""

from __future__ import annotations

import mmap
import socket
import struct
from collections.abc import Iterator

import numpy as np

from agent.capture.bpf import Instruction, attach
from agent.netdecode.columns import HEAD_BYTES, PacketColumns, chain_offsets, gather

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
FRAME_SIZE = 2048

_BLOCK_HDR = struct.Struct("=IIII")  # block_status, num_pkts, offset_to_first_pkt, blk_len (+8)
_NEXT_OFFSET = struct.Struct("=I")
_PKT_HDR = np.dtype([("next", "=u4"), ("sec", "=u4"), ("nsec", "=u4"), ("snaplen", "=u4"),
                     ("len", "=u4"), ("status", "=u4"), ("mac", "=u2"), ("net", "=u2")])
_STATS_V3 = struct.Struct("=III")  # tp_packets, tp_drops, tp_freeze_q_cnt


def open_packet_socket() -> socket.socket:
    """A raw AF_PACKET socket (``PermissionError`` without CAP_NET_RAW)."""
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))


class Ring:
    """One interface's capture ring; iterate :meth:`ready_columns` after ``poll`` says readable."""

    def __init__(
        self,
        interface: str,
        linktype: int,
        program: list[Instruction],
        block_bytes: int = 1 << 20,
        blocks: int = 64,
        block_timeout_ms: int = 100,
    ) -> None:
        self.interface = interface
        self.linktype = linktype
        self.block_bytes = block_bytes
        self.blocks = blocks
        self._next = 0
        self.sock = open_packet_socket()
        try:
            # Filter first, so nothing unfiltered lands in the ring before it exists.
            attach(self.sock, program)
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = struct.pack(
                "=IIIIIII", block_bytes, blocks, FRAME_SIZE, block_bytes * blocks // FRAME_SIZE,
                block_timeout_ms, 0, 0,
            )
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.map = mmap.mmap(
                self.sock.fileno(), block_bytes * blocks, mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
            self.sock.bind((interface, ETH_P_ALL))
        except OSError:
            self.sock.close()
            raise
        self.statistics()  # reading resets the kernel counters: start from zero

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready_columns(self, max_blocks: int | None = None) -> Iterator[PacketColumns]:
        """Packets of every block the kernel has handed over, one :class:`PacketColumns` each.

        The used part of the block is copied (one ``memcpy``) and the block handed back to the
        kernel at once; the packet chain is then walked and the headers gathered in bulk.
        """
        mm = self.map
        size = self.block_bytes
        budget = self.blocks if max_blocks is None else max_blocks
        while budget > 0:
            base = self._next * size
            status, count, first, used = _BLOCK_HDR.unpack_from(mm, base + 8)
            if not status & TP_STATUS_USER:
                return
            block = mm[base:base + min(max(used, first), size)]
            struct.pack_into("=I", mm, base + 8, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % self.blocks
            budget -= 1
            if count:
                yield block_columns(block, first, count, self.linktype)

    def statistics(self) -> tuple[int, int, int]:
        """(packets, drops, freeze-queue count) since the previous call (the kernel resets)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
        packets, drops, freezes = _STATS_V3.unpack(raw)
        return packets, drops, freezes

    def close(self) -> None:
        try:
            self.map.close()
        except (BufferError, ValueError):
            pass
        self.sock.close()


def block_columns(block: bytes, first: int, count: int, linktype: int) -> PacketColumns:
    """The ``count`` packets of one TPACKET_V3 block (a copy of its used bytes) as columns.

    A chain or a frame that points past the copied block (a kernel/user-space mismatch, never
    seen in practice) is cut where it leaves the block rather than read out of bounds.
    """
    offsets = chain_offsets(block, first, count - 1, _NEXT_OFFSET, 0)
    starts = np.array(offsets, dtype=np.int64)
    starts = starts[starts + _PKT_HDR.itemsize <= len(block)]
    buf = np.frombuffer(block, dtype=np.uint8)
    headers = gather(buf, starts, _PKT_HDR.itemsize).view(_PKT_HDR).ravel()
    frames = starts + headers["mac"]
    caplen = np.minimum(headers["snaplen"].astype(np.int64), np.maximum(len(block) - frames, 0))
    return PacketColumns(
        buffer=block,
        offsets=frames,
        caplen=caplen,
        wire=headers["len"].astype(np.int64),
        timestamps=headers["sec"] + headers["nsec"] * 1e-9,
        linktypes=np.full(len(starts), linktype, dtype=np.int64),
        head=gather(buf, frames, HEAD_BYTES),
    )
