"""Protocol analyzers of the packet path, and their registration.

Adding an analyzer: one new module here with an :class:`~agent.netevents.analyzers.base.Analyzer`
subclass (``protocols`` for every packet of an IP protocol, or ``transports`` + ``ports()`` for
an application on TCP/UDP ports), and one line in :data:`ANALYZERS`. The processor builds one
instance of each per capture and dispatches to them; see docs/network.md.
"""

from __future__ import annotations

from agent.netevents.analyzers.arp import ArpAnalyzer
from agent.netevents.analyzers.base import PROTO_ARP, Analyzer, Packet
from agent.netevents.analyzers.dns import DnsAnalyzer
from agent.netevents.analyzers.icmp import IcmpAnalyzer
from agent.netevents.analyzers.icmp_echo import IcmpEchoAnalyzer
from agent.netevents.analyzers.ipv6_nd import NdAnalyzer
from agent.netevents.analyzers.service_probes import ServiceProbeAnalyzer
from agent.netevents.analyzers.ssh import SshAnalyzer
from agent.netevents.analyzers.tcp import TcpAnalyzer
from agent.netevents.analyzers.tcp_sessions import TcpSessionsAnalyzer
from agent.netevents.analyzers.udp import UdpAnalyzer

ANALYZERS: tuple[type[Analyzer], ...] = (
    ServiceProbeAnalyzer,  # before TcpAnalyzer: it asks whether a SYN-ACK's connection is new
    TcpAnalyzer, UdpAnalyzer, IcmpAnalyzer, DnsAnalyzer, ArpAnalyzer, SshAnalyzer,
    NdAnalyzer, TcpSessionsAnalyzer, IcmpEchoAnalyzer,
)
"""Every analyzer, in dispatch order (transport analyzers before port analyzers)."""

__all__ = ["ANALYZERS", "PROTO_ARP", "Analyzer", "Packet"]
