"""IPv6 neighbour discovery (RFC 4861): the IPv6 analogue of ARP, and its attacks.

ICMPv6 types 133-137 (router solicitation and advertisement, neighbour solicitation and
advertisement, redirect) are parsed with bounds (options walked by their 8-byte length, at most
:data:`MAX_OPTIONS`, a zero length ends the walk as RFC 4861 §4.6 requires). Hand-written: the
messages are fixed layouts plus TLV options, on the hot path of every ICMPv6 packet.

State (each bounded; oldest entry dropped first):

* a neighbour table, IPv6 address → MAC, learned from the *target* link-layer option of
  neighbour advertisements and the *source* link-layer option of solicitations
  (``network.max_nd_neighbours``). An advertisement that binds a known address to another MAC
  (``parasite6``, scapy, ``na6``) is the IPv6 ARP spoof: ``nd.target_mac_previous``;
* the routers seen advertising (source MAC, at most :data:`MAX_ROUTERS`) and the prefixes
  advertised (at most :data:`MAX_KNOWN_PREFIXES`; :data:`MAX_PREFIXES` read per message): an
  advertisement from a new router MAC while another router is known (``fake_router6``, a
  rogue radvd) or announcing a new prefix is flagged. The first router seen is learned (trust
  on first use): a capture that starts during an attack learns the attacker.

Events (``vedette`` / ``ipv6_nd``, within the per-MAC budget of ARP,
``network.max_arp_events_per_mac``, twice that when something changed): every router
advertisement and redirect; neighbour advertisements that are unsolicited, new or change a
binding; solicitations whose source link-layer option changes a binding. Other solicitations
and routine solicited advertisements only update the tables.
``nd.hop_limit_valid`` is false when the IPv6 hop limit is not 255: such a message was routed
from off-link (receivers must drop it), itself evidence of forgery.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Final

from agent.events import Event, LogSource
from agent.netdecode.layers import PROTO_ICMPV6
from agent.netevents.analyzers.base import Analyzer, Packet
from agent.netevents.direction import ip_text, mac_text
from agent.netevents.state import TrafficState

IPV6_ND: Final = LogSource("vedette", "ipv6_nd")
RS, RA, NS, NA, REDIRECT = 133, 134, 135, 136, 137
ND_NAMES: Final = {RS: "router_solicitation", RA: "router_advertisement",
                   NS: "neighbor_solicitation", NA: "neighbor_advertisement", REDIRECT: "redirect"}
OPT_SOURCE_LL, OPT_TARGET_LL, OPT_PREFIX = 1, 2, 3
MAX_OPTIONS: Final = 32
MAX_ROUTERS: Final = 256
MAX_PREFIXES: Final = 16
MAX_PREFIXES_SHOWN: Final = 8
MAX_KNOWN_PREFIXES: Final = 1024
_BODY: Final = {RS: 4, RA: 12, NS: 20, NA: 20, REDIRECT: 36}
"""Fixed part of each message after the 4-byte ICMPv6 header."""


class NdMessage:
    """One parsed message: fixed fields and the options an analyzer reads."""

    __slots__ = ("flags", "kind", "lifetime", "prefixes", "redirect_to", "source_mac",
                 "target", "target_mac")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.flags = 0
        self.lifetime = 0
        self.target = b""
        self.redirect_to = b""
        self.source_mac: bytes | None = None
        self.target_mac: bytes | None = None
        self.prefixes: list[tuple[bytes, int]] = []


def parse_nd(data: bytes, body: int, end: int, kind: int) -> NdMessage | str:
    """The message whose body (after type, code, checksum) starts at ``body``; a reason
    string when it is cut or malformed."""
    fixed = _BODY[kind]
    if end - body < fixed:
        return "nd_truncated"
    msg = NdMessage(kind)
    if kind == RA:
        msg.flags = data[body + 1]
        msg.lifetime = (data[body + 2] << 8) | data[body + 3]
    elif kind in (NS, NA):
        msg.flags = data[body]
        msg.target = data[body + 4:body + 20]
    elif kind == REDIRECT:
        msg.target = data[body + 4:body + 20]
        msg.redirect_to = data[body + 20:body + 36]
    at = body + fixed
    for _ in range(MAX_OPTIONS):
        if end - at < 2:
            break
        opt, units = data[at], data[at + 1]
        size = units * 8
        if not units or at + size > end:
            return "nd_bad_option"
        if opt in (OPT_SOURCE_LL, OPT_TARGET_LL) and size == 8:
            mac = data[at + 2:at + 8]
            if opt == OPT_SOURCE_LL:
                msg.source_mac = mac
            else:
                msg.target_mac = mac
        elif opt == OPT_PREFIX and size == 32 and len(msg.prefixes) < MAX_PREFIXES:
            msg.prefixes.append((data[at + 16:at + 32], min(data[at + 2], 128)))
        at += size
    return msg


def prefix_text(prefix: bytes, length: int) -> str:
    return f"{ip_text(prefix)}/{length}"


class NdAnalyzer(Analyzer):
    name: ClassVar[str] = "ipv6_nd"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_ICMPV6,)

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.neighbours: OrderedDict[bytes, bytes] = OrderedDict()
        self.max_neighbours = state.settings.max_nd_neighbours
        self.routers: OrderedDict[bytes, int] = OrderedDict()
        """Router MAC → advertisements seen."""
        self.prefixes: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        """Prefix → MAC of the router that last advertised it."""

    def packet(self, out: list[Event], pkt: Packet) -> None:
        kind = pkt.sport
        if kind not in _BODY:
            return
        stats = self.state.stats
        if pkt.dport != 0:  # ND messages have code 0
            stats.errors["nd_bad_code"] += 1
            return
        msg = parse_nd(pkt.data, pkt.l4, pkt.end, kind)
        if isinstance(msg, str):
            stats.errors[msg] += 1
            return
        fields: dict[str, Any] | None = None
        changed = False
        if kind == NA:
            fields, changed = self._advertisement(msg)
        elif kind in (NS, RS):
            if msg.source_mac is not None and any(pkt.src):  # :: (DAD) claims nothing
                previous = self._learn(pkt.src, msg.source_mac)
                if previous is not None:  # a solicitation poisons the receivers' caches too
                    changed = True
                    fields = {"nd.target_ip": ip_text(pkt.src),
                              "nd.target_mac": mac_text(msg.source_mac),
                              "nd.target_mac_previous": mac_text(previous)}
        elif kind == RA:
            fields, changed = self._router(pkt, msg)
        else:
            fields = {"nd.target_ip": ip_text(msg.target),
                      "nd.redirect_destination": ip_text(msg.redirect_to)}
            if msg.target_mac is not None:
                fields["nd.target_mac"] = mac_text(msg.target_mac)
        if fields is None:
            return
        sender = msg.source_mac or msg.target_mac or b""
        limit = self.settings.max_arp_events_per_mac
        if not self.state.budgets.admit_aux(b"nd" + sender, limit * 2 if changed else limit):
            return
        stats.events["ipv6_nd"] += 1
        out.append(nd_event(pkt, kind, msg, fields, _hop_limit(pkt)))

    def _learn(self, address: bytes, mac: bytes) -> bytes | None:
        """Bind ``address`` to ``mac``; the former MAC when it differs."""
        table = self.neighbours
        previous = table.get(address)
        table[address] = mac
        table.move_to_end(address)
        if len(table) > self.max_neighbours:
            table.popitem(last=False)
            self.state.stats.table_overflows["nd_neighbours"] += 1
        return previous if previous != mac else None

    def _advertisement(self, msg: NdMessage) -> tuple[dict[str, Any] | None, bool]:
        if msg.target_mac is None:
            return None, False
        known = msg.target in self.neighbours
        previous = self._learn(msg.target, msg.target_mac)
        solicited = bool(msg.flags & 0x40)
        if known and previous is None and solicited:
            return None, False  # routine: a solicited answer confirming a known binding
        fields: dict[str, Any] = {
            "nd.target_ip": ip_text(msg.target),
            "nd.target_mac": mac_text(msg.target_mac),
            "nd.router": bool(msg.flags & 0x80),
            "nd.solicited": solicited,
            "nd.override": bool(msg.flags & 0x20),
            "nd.new_neighbor": not known,
        }
        if previous is not None:
            fields["nd.target_mac_previous"] = mac_text(previous)
        return fields, previous is not None

    def _router(self, pkt: Packet, msg: NdMessage) -> tuple[dict[str, Any], bool]:
        mac = msg.source_mac or b""
        routers, prefixes = self.routers, self.prefixes
        new_router = mac not in routers
        routers[mac] = routers.get(mac, 0) + 1
        routers.move_to_end(mac)
        if len(routers) > MAX_ROUTERS:
            routers.popitem(last=False)
            self.state.stats.table_overflows["nd_routers"] += 1
        new = [p for p in msg.prefixes if p not in prefixes]
        for p in msg.prefixes:
            prefixes[p] = mac
            prefixes.move_to_end(p)
        while len(prefixes) > MAX_KNOWN_PREFIXES:
            prefixes.popitem(last=False)
            self.state.stats.table_overflows["nd_prefixes"] += 1
        if msg.source_mac is not None:
            self._learn(pkt.src, msg.source_mac)
        fields: dict[str, Any] = {
            "nd.router_lifetime": msg.lifetime,
            "nd.managed": bool(msg.flags & 0x80),
            "nd.other_config": bool(msg.flags & 0x40),
            "nd.prefixes": [prefix_text(*p) for p in msg.prefixes[:MAX_PREFIXES_SHOWN]],
            "nd.new_router": new_router,
            "nd.known_routers": len(routers) - 1,
            "nd.new_prefixes": [prefix_text(*p) for p in new[:MAX_PREFIXES_SHOWN]],
            "nd.new_prefix_count": len(new),
        }
        return fields, new_router or bool(new)


def _hop_limit(pkt: Packet) -> int | None:
    """The IPv6 hop limit, when the IPv6 header sits right before the ICMPv6 header."""
    ip = pkt.l4 - 44
    if pkt.v6_headers or ip < 0 or pkt.data[ip] >> 4 != 6 or pkt.data[ip + 8:ip + 24] != pkt.src:
        return None
    return pkt.data[ip + 7]


def nd_event(pkt: Packet, kind: int, msg: NdMessage, extra: dict[str, Any],
             hop_limit: int | None) -> Event:
    """The ``ipv6_nd`` event of one message (field catalogue: docs/events.md)."""
    fields: dict[str, Any] = {
        "event.dataset": "network.ipv6_nd",
        "event.action": ND_NAMES[kind],
        "source.ip": ip_text(pkt.src),
        "destination.ip": ip_text(pkt.dst),
        "network.type": "ipv6",
        "network.transport": "ipv6-icmp",
        "network.iana_number": PROTO_ICMPV6,
        "icmp.type": kind,
        "nd.type": ND_NAMES[kind],
    }
    if msg.source_mac is not None:
        fields["source.mac"] = mac_text(msg.source_mac)
    if hop_limit is not None:
        fields["nd.hop_limit_valid"] = hop_limit == 255
    if pkt.interface is not None:
        fields["observer.ingress.interface.name"] = pkt.interface
    fields.update(extra)
    return Event(pkt.ts, IPV6_ND, fields)
