"""Event constructors for the network logsources (field catalogue: docs/events.md, "Network").

Each function turns already-decoded values into one :class:`~agent.events.Event`; they run only
for packets that pass the capture budgets, never for every packet.
"""

from __future__ import annotations

from typing import Any, Final

from agent.events import Event, LogSource
from agent.netdecode.dns import DnsMessage, qtype_name, rcode_name
from agent.netdecode.layers import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    V6_EXT_NAMES,
    unusual_chain,
)
from agent.netevents.direction import ip_text, mac_text
from agent.netevents.entries import Aggregate
from agent.netevents.names import analyse

NETWORK_PACKET: Final = LogSource("vedette", "network_packet")
NETWORK_TRAFFIC: Final = LogSource("vedette", "network_traffic")
NETWORK_FLOW: Final = LogSource("vedette", "network_flow")
DNS: Final = LogSource("vedette", "dns")
ARP: Final = LogSource("vedette", "arp")
CAPTURE_HEALTH: Final = LogSource("vedette", "capture_health")

TRANSPORT: Final[dict[int, str]] = {
    PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "ipv6-icmp",
    2: "igmp", 47: "gre", 50: "esp", 51: "ah", 132: "sctp", 44: "fragment",
}


def transport_name(proto: int) -> str:
    return TRANSPORT.get(proto) or str(proto)


def _ip_fields(
    family: int, src: bytes, dst: bytes, proto: int, direction: str, wire_length: int,
    interface: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "source.ip": ip_text(src),
        "destination.ip": ip_text(dst),
        "network.type": "ipv4" if family == 4 else "ipv6",
        "network.transport": transport_name(proto),
        "network.iana_number": proto,
        "network.direction": direction,
        "network.bytes": wire_length,
    }
    if interface is not None:
        fields["observer.ingress.interface.name"] = interface
    return fields


def packet_evidence(fragments: int, v6_headers: tuple[int, ...],
                    untracked: bool) -> dict[str, Any] | None:
    """Fields a packet event carries when it arrived in an unusual shape (``None``: none)."""
    if not (fragments or v6_headers or untracked):
        return None
    fields: dict[str, Any] = {}
    if fragments:
        fields["network.fragments"] = fragments
    if v6_headers:
        fields["ipv6.extension_headers"] = len(v6_headers)
        fields["ipv6.extension_chain"] = [V6_EXT_NAMES.get(h, str(h)) for h in v6_headers]
        fields["ipv6.unusual_extension_chain"] = unusual_chain(v6_headers)
    if untracked:
        fields["tcp.connection_state"] = "untracked"
    return fields


def tcp_packet(
    ts: float, family: int, src: bytes, dst: bytes, sport: int, dport: int, flags: int,
    direction: str, wire_length: int, interface: str | None,
    evidence: dict[str, Any] | None = None, link: dict[str, Any] | None = None,
) -> Event:
    fields = _ip_fields(family, src, dst, PROTO_TCP, direction, wire_length, interface)
    fields["event.dataset"] = "network.packet"
    fields["source.port"] = sport
    fields["destination.port"] = dport
    fields["tcp.flags.fin"] = bool(flags & 0x01)
    fields["tcp.flags.syn"] = bool(flags & 0x02)
    fields["tcp.flags.rst"] = bool(flags & 0x04)
    fields["tcp.flags.psh"] = bool(flags & 0x08)
    fields["tcp.flags.ack"] = bool(flags & 0x10)
    fields["tcp.flags.urg"] = bool(flags & 0x20)
    fields["tcp.flags.value"] = flags
    if evidence:
        fields.update(evidence)
    if link:
        fields.update(link)
    return Event(ts, NETWORK_PACKET, fields)


def evasion_event(
    ts: float, src: bytes, dst: bytes, proto: int, action: str, direction: str,
    wire_length: int, interface: str | None,
) -> Event:
    """Traffic shaped to slip past a sensor (``event.action``: ``fragment_overlap``,
    ``tiny_fragment``)."""
    fields = _ip_fields(4 if len(src) == 4 else 6, src, dst, proto, direction, wire_length,
                        interface)
    fields["event.dataset"] = "network.packet"
    fields["event.action"] = action
    return Event(ts, NETWORK_PACKET, fields)


def icmp_packet(
    ts: float, family: int, src: bytes, dst: bytes, proto: int, icmp_type: int, code: int,
    quoted: tuple[int, bytes, int] | None, direction: str, wire_length: int,
    interface: str | None, evidence: dict[str, Any] | None = None,
    link: dict[str, Any] | None = None,
) -> Event:
    fields = _ip_fields(family, src, dst, proto, direction, wire_length, interface)
    fields["event.dataset"] = "network.packet"
    fields["icmp.type"] = icmp_type
    fields["icmp.code"] = code
    if quoted is not None:
        q_proto, q_dst, q_port = quoted
        fields["icmp.original.transport"] = transport_name(q_proto)
        fields["icmp.original.destination.ip"] = ip_text(q_dst)
        if q_port:
            fields["icmp.original.destination.port"] = q_port
    if evidence:
        fields.update(evidence)
    if link:
        fields.update(link)
    return Event(ts, NETWORK_PACKET, fields)


def dns_event(
    ts: float, family: int, src: bytes, dst: bytes, sport: int, dport: int, msg: DnsMessage,
    direction: str, wire_length: int, interface: str | None, transport: int = PROTO_UDP,
) -> Event:
    fields = _ip_fields(family, src, dst, transport, direction, wire_length, interface)
    info = analyse(msg.name)
    fields["event.dataset"] = "network.dns"
    fields["source.port"] = sport
    fields["destination.port"] = dport
    fields["network.protocol"] = "dns"
    fields["dns.id"] = msg.id
    fields["dns.type"] = "answer" if msg.is_response else "query"
    fields["dns.op_code"] = msg.opcode
    fields["dns.question.name"] = msg.name
    fields["dns.question.type"] = qtype_name(msg.qtype)
    fields["dns.question.registered_domain"] = info.registered_domain
    fields["dns.question.top_level_domain"] = info.top_level_domain
    fields["dns.question.subdomain"] = info.subdomain
    fields["dns.question.subdomain_length"] = info.subdomain_length
    fields["dns.question.subdomain_entropy"] = info.subdomain_entropy
    fields["dns.question.max_label_length"] = info.max_label_length
    fields["dns.question.name_length"] = len(msg.name)
    if msg.is_response:
        fields["dns.response_code"] = rcode_name(msg.rcode)
        fields["dns.answers.count"] = msg.answer_count
    return Event(ts, DNS, fields)


def arp_event(
    ts: float, eth_src: bytes, eth_dst: bytes, opcode: int, sender_mac: bytes,
    sender_ip: bytes, target_mac: bytes, target_ip: bytes, previous_mac: bytes | None,
    is_gateway: bool, interface: str | None,
) -> Event:
    fields: dict[str, Any] = {
        "event.dataset": "network.arp",
        "network.type": "arp",
        "arp.opcode": opcode,
        "arp.operation": "request" if opcode == 1 else "reply" if opcode == 2 else str(opcode),
        "arp.sender_mac": mac_text(sender_mac),
        "arp.sender_ip": ip_text(sender_ip),
        "arp.target_mac": mac_text(target_mac),
        "arp.target_ip": ip_text(target_ip),
        "arp.gratuitous": sender_ip == target_ip,
        "arp.sender_is_gateway": is_gateway,
    }
    if eth_src:
        fields["source.mac"] = mac_text(eth_src)
        fields["destination.mac"] = mac_text(eth_dst)
    if previous_mac is not None:
        fields["arp.sender_mac_previous"] = mac_text(previous_mac)
    if interface is not None:
        fields["observer.ingress.interface.name"] = interface
    return Event(ts, ARP, fields)


def traffic_event(
    ts: float, dst: bytes, port: int, proto: int, counts: Aggregate, sources: int,
    direction: str, interval: float,
) -> Event:
    packets, nbytes, syn = counts.packets, counts.bytes, counts.syn
    synack, rst, echo = counts.synack, counts.rst, counts.echo
    fields: dict[str, Any] = {
        "event.dataset": "network.traffic",
        "destination.ip": ip_text(dst),
        "network.type": "ipv4" if len(dst) == 4 else "ipv6",
        "network.transport": transport_name(proto),
        "network.direction": direction,
        "traffic.interval_seconds": interval,
        "traffic.packets": packets,
        "traffic.bytes": nbytes,
        "traffic.source_count": sources,
    }
    if port > 0:
        fields["destination.port"] = port
    if proto == PROTO_TCP:
        fields["traffic.syn"] = syn
        fields["traffic.synack"] = synack
        fields["traffic.rst"] = rst
        fields["traffic.syn_ratio"] = round(syn / packets, 3) if packets else 0.0
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        fields["traffic.icmp_echo"] = echo
    return Event(ts, NETWORK_TRAFFIC, fields)


def flow_event(
    ts: float, src: bytes, dst: bytes, proto: int, packets: int, nbytes: int, first: float,
    last: float, direction: str,
) -> Event:
    fields: dict[str, Any] = {
        "event.dataset": "network.flow",
        "event.action": "flow_summary",
        "source.ip": ip_text(src),
        "destination.ip": ip_text(dst),
        "network.type": "ipv4" if len(src) == 4 else "ipv6",
        "network.transport": transport_name(proto),
        "network.direction": direction,
        "network.packets": packets,
        "network.bytes": nbytes,
        "event.duration": int((last - first) * 1e9),
    }
    return Event(ts, NETWORK_FLOW, fields)


def intel_event(
    ts: float, src: bytes, dst: bytes, proto: int, matched: bytes, feed: str, direction: str
) -> Event:
    fields: dict[str, Any] = {
        "event.dataset": "network.flow",
        "event.action": "threat_intel_match",
        "source.ip": ip_text(src),
        "destination.ip": ip_text(dst),
        "network.type": "ipv4" if len(src) == 4 else "ipv6",
        "network.transport": transport_name(proto),
        "network.direction": direction,
        "threat.indicator.ip": ip_text(matched),
        "threat.indicator.type": "ipv4-addr" if len(matched) == 4 else "ipv6-addr",
        "threat.feed.name": feed,
        "threat.indicator.matched_side": "source" if matched == src else "destination",
    }
    return Event(ts, NETWORK_FLOW, fields)
