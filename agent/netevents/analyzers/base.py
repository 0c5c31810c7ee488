"""What every protocol analyzer is: a per-packet handler registered by protocol or port.

The processor decodes a frame (link layer, IP, fragments reassembled, IPv6 extension headers
walked, transport header) into one :class:`Packet`, counts it in its flow, then hands it to the
analyzers registered for its IP protocol (``protocols``) and, for TCP and UDP, to those
registered for its source or destination port (``ports``). An analyzer changes the shared
:class:`~agent.netevents.state.TrafficState` through its public API and appends the events it
makes to ``out``. Analyzers know nothing of each other or of the processor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netevents.state import TrafficState

PROTO_ARP: Final = -1
"""Pseudo protocol of ARP frames (not IP) in the registry."""

# What a group of count-only packets of a batch is (agent/netevents/bulk.py), and so which
# analyzers' vectorised counters (Analyzer.bulk_kinds) count it.
SYN_FLOOD, UDP, DNS_FROM_CLIENT, DNS_TO_CLIENT, ICMP, ICMP_PROBE, ICMP_ERROR = range(7)
REFUSED_SYNACK: Final = 7
"""SYN-ACKs of one server (address, port) whose per-source event budget is spent: each only
counts, and teaches what a SYN-ACK teaches. Counted so only when every analyzer of all TCP
packets declares this kind: its :meth:`Analyzer.count_bulk` adds what is counted (any
order), its :meth:`Analyzer.refused_synack` does, at each SYN-ACK's turn, what depends on
packet order."""


class Packet:
    """One decoded packet as the analyzers see it (only for the packets that need a handler:
    ordinary TCP segments and count-only floods never become one)."""

    __slots__ = ("data", "dport", "dst", "end", "family", "flags", "fragments", "interface",
                 "l4", "proto", "sport", "src", "ts", "v6_headers", "wire")

    def __init__(self, ts: float, family: int, src: bytes, dst: bytes, proto: int, sport: int,
                 dport: int, flags: int, data: bytes, l4: int, end: int, wire: int,
                 interface: str | None, fragments: int = 0,
                 v6_headers: tuple[int, ...] = ()) -> None:
        self.ts = ts
        self.family = family
        """4 or 6; 0 for ARP (``src``/``dst`` are then the Ethernet MACs, ``l4`` the ARP
        header's offset)."""
        self.src = src
        self.dst = dst
        self.proto = proto
        self.sport = sport
        """TCP/UDP source port; ICMP type."""
        self.dport = dport
        """TCP/UDP destination port; ICMP code."""
        self.flags = flags
        """TCP flag byte (0 for other protocols)."""
        self.data = data
        """The frame (or the reassembled datagram) the offsets point into."""
        self.l4 = l4
        """Start of the transport payload."""
        self.end = end
        """End of the IP datagram within ``data``."""
        self.wire = wire
        self.interface = interface
        self.fragments = fragments
        """How many IP fragments the datagram arrived in (0: not fragmented)."""
        self.v6_headers = v6_headers
        """IPv6 extension header types in order (empty for IPv4 or a bare IPv6 header)."""


class Analyzer:
    """Base of the protocol analyzers: subclass, set ``protocols`` or override :meth:`ports`,
    implement :meth:`packet`, and add the class to :data:`agent.netevents.analyzers.ANALYZERS`."""

    name: ClassVar[str] = ""
    protocols: ClassVar[tuple[int, ...]] = ()
    """IP protocols (or :data:`PROTO_ARP`) whose every packet this analyzer sees."""
    transports: ClassVar[tuple[int, ...]] = ()
    """For a port analyzer: the transports (TCP, UDP) whose :meth:`ports` it reads."""

    def __init__(self, state: TrafficState) -> None:
        self.state = state
        self.settings: NetworkSection = state.settings

    def ports(self) -> Iterable[int]:
        """TCP/UDP ports whose packets (either side) this analyzer sees; none by default."""
        return ()

    def packet(self, out: list[Event], pkt: Packet) -> None:
        raise NotImplementedError

    bulk_kinds: ClassVar[tuple[int, ...]] = ()
    """Count-only group kinds (:mod:`agent.netevents.bulk`: ``DNS_FROM_CLIENT``, …) whose
    packets :meth:`count_bulk` counts; empty: the analyzer has no vectorised counter."""

    def count_bulk(self, cols: PacketColumns, rows: npt.NDArray[np.intp]) -> None:
        """Optional vectorised counter: add what :meth:`packet` would count for the frames
        ``rows`` of ``cols`` (Ethernet/IPv4 without options, unfragmented) whose events the
        budgets refuse anyway — the same counters, for a whole batch at once. Called only for
        the group kinds in :attr:`bulk_kinds`."""

    def refused_synack(self, ts: float, key: bytes, wire: int) -> None:
        """For :data:`REFUSED_SYNACK` in :attr:`bulk_kinds`: at its turn, what :meth:`packet`
        does for an Ethernet/IPv4 SYN-ACK (connection ``key``: the 12 address and port bytes,
        as sent) whose event the budgets refuse and that depends on packet order (tables
        that learn it in order); :meth:`count_bulk` adds the rest later. None by default."""

    def expire(self, now: float) -> list[Event]:
        """Events of state that timed out by ``now`` (live capture calls it as time passes
        without packets); none by default."""
        return []

    def flush(self) -> list[Event]:
        """End of input: events of every open state; none by default."""
        return []
