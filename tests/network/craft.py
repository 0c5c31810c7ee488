"""Scapy builders for network test traffic: each returns packets with their capture times set.

Addresses follow one story: the monitored server ``SERVER`` (10.1.0.10) and its LAN
(10.1.0.0/24, gateway ``GATEWAY``), an internet attacker ``ATTACKER`` (203.0.113.66),
internet clients in 198.51.100.0/24. Times start at ``T0`` (2026-01-01T00:00:00Z).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

T0 = 1767225600.0
SERVER = "10.1.0.10"
GATEWAY = "10.1.0.1"
CLIENT = "10.1.0.20"
LAN_ATTACKER = "10.1.0.66"
ATTACKER = "203.0.113.66"
MAC_SERVER = "02:00:00:00:00:10"
MAC_GATEWAY = "02:00:00:00:00:01"
MAC_CLIENT = "02:00:00:00:00:20"
MAC_ATTACKER = "02:00:00:00:00:66"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def at(pkt: Packet, ts: float) -> Packet:
    pkt.time = ts
    return pkt


def eth(src_mac: str = MAC_GATEWAY, dst_mac: str = MAC_SERVER) -> Ether:
    return Ether(src=src_mac, dst=dst_mac)


def tcp(ts: float, src: str, dst: str, sport: int, dport: int, flags: str,
        payload: bytes = b"") -> Packet:
    return at(eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
              / payload, ts)


def handshake(ts: float, client: str, server: str, sport: int, dport: int,
              data: int = 2) -> list[Packet]:
    """A complete, ordinary TCP connection: handshake, a few data segments, FIN close."""
    pkts = [
        tcp(ts, client, server, sport, dport, "S"),
        tcp(ts + 0.001, server, client, dport, sport, "SA"),
        tcp(ts + 0.002, client, server, sport, dport, "A"),
    ]
    for i in range(data):
        pkts.append(tcp(ts + 0.003 + i * 0.001, client, server, sport, dport, "PA", b"x" * 200))
        pkts.append(tcp(ts + 0.0035 + i * 0.001, server, client, dport, sport, "A"))
    end = ts + 0.01 + data * 0.001
    pkts.append(tcp(end, client, server, sport, dport, "FA"))
    pkts.append(tcp(end + 0.001, server, client, dport, sport, "FA"))
    pkts.append(tcp(end + 0.002, client, server, sport, dport, "A"))
    return pkts


def udp(ts: float, src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> Packet:
    return at(eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload, ts)


def port_unreachable(ts: float, target: str, scanner: str, sport: int, dport: int) -> Packet:
    return at(eth(MAC_SERVER, MAC_GATEWAY) / IP(src=target, dst=scanner) / ICMP(type=3, code=3)
              / IPerror(src=scanner, dst=target) / UDPerror(sport=sport, dport=dport), ts)


def echo(ts: float, src: str, dst: str, seq: int = 1) -> Packet:
    return at(eth() / IP(src=src, dst=dst) / ICMP(type=8, id=77, seq=seq), ts)


def dns_query(ts: float, client: str, name: str, qtype: str = "A", resolver: str = "10.1.0.53",
              sport: int = 53000) -> Packet:
    return at(eth(MAC_SERVER, MAC_GATEWAY) / IP(src=client, dst=resolver)
              / UDP(sport=sport, dport=53) / DNS(id=sport & 0xFFFF, rd=1,
                                                  qd=DNSQR(qname=name, qtype=qtype)), ts)


def dns_tcp(ts: float, src: str, dst: str, sport: int, dport: int, message: DNS | bytes,
            seq: int = 1000) -> Packet:
    """One TCP segment (PSH-ACK) carrying a DNS message with its 2-byte length (RFC 7766);
    ``message`` as bytes is sent as it is (the middle of a longer message)."""
    body = message if isinstance(message, bytes) else bytes(message)
    if not isinstance(message, bytes):
        body = len(body).to_bytes(2, "big") + body
    return at(eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=seq)
              / body, ts)


def arp(ts: float, op: int, sender_mac: str, sender_ip: str, target_ip: str,
        target_mac: str = "00:00:00:00:00:00", dst_mac: str = BROADCAST) -> Packet:
    return at(Ether(src=sender_mac, dst=dst_mac) / ARP(
        op=op, hwsrc=sender_mac, psrc=sender_ip, hwdst=target_mac, pdst=target_ip), ts)


def random_label(rng: random.Random, length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(length))


def random_ip(rng: random.Random) -> str:
    parts = (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    return ".".join(map(str, parts))


def write(path: Path, packets: Iterable[Packet]) -> Path:
    """Write packets sorted by time (pcap readers and the engine expect time order)."""
    ordered = sorted(packets, key=lambda p: float(p.time))
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), ordered)
    return path


def syn_frames(count: int, src: str, dst: str, dport: int, start: float, step: float,
               random_sources: random.Random | None = None) -> list[tuple[float, bytes]]:
    """Many SYN frames fast: one scapy build, then source port (and address) patched in place.

    Checksums are left stale; the decoder never checks them.
    """
    template = bytearray(bytes(eth() / IP(src=src, dst=dst) / TCP(sport=1, dport=dport,
                                                                  flags="S")))
    out = []
    for i in range(count):
        frame = bytearray(template)
        frame[34:36] = (1024 + i % 60000).to_bytes(2, "big")
        if random_sources is not None:
            frame[26:30] = random_sources.getrandbits(32).to_bytes(4, "big")
        out.append((start + i * step, bytes(frame)))
    return out
