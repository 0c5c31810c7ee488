"""ARP: parse the Ethernet/IPv4 ARP header and remember which MAC owns which IP.

The binding table is what makes "an IP claimed by a new MAC" visible across any time span: a
rule window only holds minutes, the table holds each IPv4 address's last MAC (bounded, oldest
entries dropped first). Gateways (configured, or the default routes of the live host) are
flagged so the gateway-MAC rule can be stricter than the general one.

:meth:`ArpTracker.binding` is the table's answer to "which MAC does this address live behind",
used by the decoy tracker to mark probes whose source MAC is not their address's
(agent/netevents/decoys.py). It distrusts change: an address first seen is bound at once, but a
*changed* binding (a gratuitous reply, arpspoof, a replaced card) is only believed after it has
held, unchanged, for :data:`SETTLE` seconds of packet time; until then :meth:`binding` keeps
answering the settled MAC. So a forged ARP flip cannot move an address to the forger's MAC in
time for the forger's probes under it to look genuine; each further flip restarts the wait.
IPv6 addresses share the table: the ND analyzer tells it every neighbour binding it learns
(agent/netevents/analyzers/ipv6_nd.py; keys are 4 or 16 bytes, so the two never mix).
An address the agent never saw in ARP (or ND) has no binding (replay started mid-way, routed hosts);
one pushed out of the bounded table is first-seen again when it returns.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ZERO_IP = b"\x00\x00\x00\x00"
SETTLE = 300.0
"""Seconds a changed binding must hold before :meth:`ArpTracker.binding` believes it."""


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
        self._settled: dict[bytes, tuple[bytes, float]] = {}
        """Per address: the MAC :meth:`binding` answers and since when the table has held
        something else (``inf``: the current MAC is the settled one)."""
        self._max = max_entries

    def add_gateways(self, gateways: Iterable[str]) -> None:
        for g in gateways:
            addr = ipaddress.ip_address(g)
            if addr.version == 4:
                self.gateways.add(addr.packed)

    def observe(self, sender_ip: bytes, sender_mac: bytes, ts: float = 0.0) -> bytes | None:
        """Record the binding an ARP packet (time ``ts``) announces; the former MAC if this
        one differs."""
        if sender_ip == ZERO_IP:  # ARP probe (RFC 5227): claims nothing yet
            return None
        table = self._table
        previous = table.get(sender_ip)
        if previous == sender_mac:
            table.move_to_end(sender_ip)
            return None
        table[sender_ip] = sender_mac
        table.move_to_end(sender_ip)
        settled = self._settled.get(sender_ip)
        if settled is None:
            self._settled[sender_ip] = (sender_mac, math.inf)
        else:
            self._promote(sender_ip, ts)  # a change that had held long enough counts first
            mac, _ = self._settled[sender_ip]
            self._settled[sender_ip] = (mac, math.inf if mac == sender_mac else ts)
        if len(table) > self._max:
            dropped, _ = table.popitem(last=False)
            self._settled.pop(dropped, None)
        return previous

    def _promote(self, ip: bytes, now: float) -> None:
        since = self._settled[ip][1]
        if now - since >= SETTLE:
            self._settled[ip] = (self._table[ip], math.inf)

    def binding(self, ip: bytes, now: float) -> bytes | None:
        """The MAC ``ip`` is believed to live behind at packet time ``now``: the last one ARP
        announced if it never changed or has held :data:`SETTLE` seconds since it did, else
        the one before the change; ``None`` for an address never seen in ARP."""
        if ip not in self._settled:
            return None
        self._promote(ip, now)
        return self._settled[ip][0]

    def gateway_macs(self, now: float) -> set[bytes]:
        """The believed MACs of the gateway addresses (routers: the source MAC of routed
        traffic)."""
        return {mac for mac in (self.binding(g, now) for g in self.gateways) if mac is not None}

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
