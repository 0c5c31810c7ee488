"""ARP: parse the Ethernet/IPv4 ARP header and remember which MAC owns which IP.

The binding table is what makes "an IP claimed by a new MAC" visible across any time span: a
rule window only holds minutes, the table holds each IPv4 address's last MAC (bounded, oldest
entries dropped first). Gateways (configured, or the default routes of the live host) are
flagged so the gateway-MAC rule can be stricter than the general one.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ZERO_IP = b"\x00\x00\x00\x00"


class ArpPacket(NamedTuple):
    opcode: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def parse_arp(data: bytes, off: int) -> ArpPacket | None:
    """Ethernet/IPv4 ARP at ``off``; ``None`` for other hardware/protocol types or short data."""
    if len(data) < off + 28:
        return None
    htype, ptype, hlen, plen, opcode = struct.unpack_from("!HHBBH", data, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    b = off + 8
    return ArpPacket(
        opcode, data[b:b + 6], data[b + 6:b + 10], data[b + 10:b + 16], data[b + 16:b + 20]
    )


class ArpTracker:
    """Bounded IP → MAC table; :meth:`observe` returns the previous MAC when it changed."""

    def __init__(self, gateways: Iterable[str] = (), max_entries: int = 65536) -> None:
        self.gateways = {
            ipaddress.ip_address(g).packed for g in gateways if ipaddress.ip_address(g).version == 4
        }
        self._table: OrderedDict[bytes, bytes] = OrderedDict()
        self._max = max_entries

    def add_gateways(self, gateways: Iterable[str]) -> None:
        for g in gateways:
            addr = ipaddress.ip_address(g)
            if addr.version == 4:
                self.gateways.add(addr.packed)

    def observe(self, sender_ip: bytes, sender_mac: bytes) -> bytes | None:
        """Record the binding an ARP packet announces; the former MAC if this one differs."""
        if sender_ip == ZERO_IP:  # ARP probe (RFC 5227): claims nothing yet
            return None
        table = self._table
        previous = table.get(sender_ip)
        if previous == sender_mac:
            table.move_to_end(sender_ip)
            return None
        table[sender_ip] = sender_mac
        table.move_to_end(sender_ip)
        if len(table) > self._max:
            table.popitem(last=False)
        return previous

    def __len__(self) -> int:
        return len(self._table)


def default_gateways(route_file: Path = Path("/proc/net/route")) -> list[str]:
    """IPv4 gateways of the default routes in this network namespace (empty when unreadable)."""
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "00000000" and parts[2] != "00000000":
            try:
                out.append(socket.inet_ntoa(struct.pack("<I", int(parts[2], 16))))
            except (ValueError, struct.error):
                continue
    return out
