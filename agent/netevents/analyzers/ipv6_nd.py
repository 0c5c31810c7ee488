"""IPv6 neighbour discovery (RFC 4861): the IPv6 analogue of ARP, and its attacks.

ICMPv6 types 133-137 (router solicitation and advertisement, neighbour solicitation and
advertisement, redirect) are parsed with bounds (options walked by their 8-byte length, at most
:data:`MAX_OPTIONS`, a zero length ends the walk as RFC 4861 §4.6 requires). Hand-written: the
messages are fixed layouts plus TLV options, on the hot path of every ICMPv6 packet.

State (each bounded):

* a neighbour table, IPv6 address → MAC, learned from the *target* link-layer option of
  neighbour advertisements and the *source* link-layer option of solicitations
  (``network.max_nd_neighbours``, :class:`NeighbourTable`: a flood of random neighbours cannot
  push out an address seen twice, so that its spoof would look new). An advertisement that
  binds a known address to another MAC (``parasite6``, scapy, ``na6``) is the IPv6 ARP spoof:
  ``nd.target_mac_previous``;
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
from off-link (receivers must drop it, RFC 4861 §7.1.2), itself evidence of forgery.
``nd.fragmented`` is true for a message that arrived in IP fragments (receivers drop it, RFC
6980; a way past RA guard, RFC 7113). Neither teaches the tables anything: a message the hosts
drop changes nothing on the segment, and learning from it would let an off-link sender make
the real owner's next advertisement look like the spoof (or plant the MAC a later on-link spoof
then reuses unseen). The rules ignore off-link messages.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Final

from agent.events import Event, LogSource
from agent.netdecode.layers import PROTO_ICMPV6
from agent.netevents.analyzers.base import Analyzer, Packet
from agent.netevents.arp import ArpTracker
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


NEIGHBOUR_STALE: Final = 3600.0
"""Seconds of packet time after which a settled neighbour not seen again may make room."""


class NeighbourTable:
    """Bounded IPv6 address → MAC table in two tiers: an address seen once is *fresh*, one seen
    again with the same MAC *settled*. When full, the oldest fresh entry makes room; with none,
    a settled entry unseen for :data:`NEIGHBOUR_STALE` seconds; else the new address is not
    learned. Each is an overflow. A flood of random neighbours (each seen once) thus churns
    only the fresh tier and cannot evict the router's binding so that its spoof looks new."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fresh: OrderedDict[bytes, bytes] = OrderedDict()
        self.settled: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.overflows = 0

    def __contains__(self, address: bytes) -> bool:
        return address in self.settled or address in self.fresh

    def __len__(self) -> int:
        return len(self.fresh) + len(self.settled)

    def get(self, address: bytes) -> bytes | None:
        entry = self.settled.get(address)
        return entry[0] if entry is not None else self.fresh.get(address)

    def learn(self, address: bytes, mac: bytes, ts: float) -> bytes | None:
        """Bind ``address`` to ``mac``; the former MAC when it differs."""
        settled, fresh = self.settled, self.fresh
        entry = settled.get(address)
        if entry is not None:
            settled[address] = (mac, ts)
            settled.move_to_end(address)
            return entry[0] if entry[0] != mac else None
        previous = fresh.get(address)
        if previous is not None:
            if previous == mac:
                del fresh[address]
                settled[address] = (mac, ts)
                return None
            fresh[address] = mac
            fresh.move_to_end(address)
            return previous
        if len(self) >= self.size and not self._make_room(ts):
            return None
        fresh[address] = mac
        return None

    def _make_room(self, ts: float) -> bool:
        self.overflows += 1
        if self.fresh:
            self.fresh.popitem(last=False)
            return True
        oldest = next(iter(self.settled.values()))
        if oldest[1] <= ts - NEIGHBOUR_STALE:
            self.settled.popitem(last=False)
            return True
        return False


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

    def __init__(self, state: TrafficState, bindings: ArpTracker | None = None) -> None:
        super().__init__(state)
        self.neighbours = NeighbourTable(state.settings.max_nd_neighbours)
        self.bindings = bindings
        """Also told every binding learned (the decoy tracker's IP → MAC view, which distrusts
        changes: agent/netevents/arp.py)."""
        self.routers: OrderedDict[bytes, int] = OrderedDict()
        """Router MAC (or source address, for an RA without the option) → advertisements."""
        self.prefixes: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        """Prefix → MAC of the router that last advertised it."""
        self.learn_ts = 0.0

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
        hop_limit = _hop_limit(pkt)
        # a message the hosts drop (routed from off-link, or fragmented) teaches nothing
        learn = hop_limit in (None, 255) and not pkt.fragments
        self.learn_ts = pkt.ts
        fields: dict[str, Any] | None = None
        changed = False
        if kind == NA:
            fields, changed = self._advertisement(msg, learn)
        elif kind in (NS, RS):
            if msg.source_mac is not None and any(pkt.src):  # :: (DAD) claims nothing
                previous = self._learn(pkt.src, msg.source_mac, learn)
                if previous is not None:  # a solicitation poisons the receivers' caches too
                    changed = True
                    fields = {"nd.target_ip": ip_text(pkt.src),
                              "nd.target_mac": mac_text(msg.source_mac),
                              "nd.target_mac_previous": mac_text(previous)}
        elif kind == RA:
            fields, changed = self._router(pkt, msg, learn)
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
        if pkt.fragments:
            fields["nd.fragmented"] = True
        out.append(nd_event(pkt, kind, msg, fields, hop_limit))

    def _learn(self, address: bytes, mac: bytes, learn: bool) -> bytes | None:
        """Bind ``address`` to ``mac`` (only compare, when ``learn`` is false); the former MAC
        when it differs."""
        table = self.neighbours
        if not learn:
            previous = table.get(address)
            return previous if previous is not None and previous != mac else None
        before = table.overflows
        previous = table.learn(address, mac, self.learn_ts)
        if self.bindings is not None:
            self.bindings.observe(address, mac, self.learn_ts)
        self.state.stats.table_overflows["nd_neighbours"] += table.overflows - before
        return previous

    def _advertisement(self, msg: NdMessage, learn: bool,
                       ) -> tuple[dict[str, Any] | None, bool]:
        if msg.target_mac is None:
            return None, False
        known = msg.target in self.neighbours
        previous = self._learn(msg.target, msg.target_mac, learn)
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

    def _router(self, pkt: Packet, msg: NdMessage, learn: bool) -> tuple[dict[str, Any], bool]:
        # a router that sends no source link-layer option is known by its (link-local)
        # address: one shared empty key let every later RA without the option pass as known
        mac = msg.source_mac or pkt.src
        routers, prefixes = self.routers, self.prefixes
        new_router = mac not in routers
        new = [p for p in msg.prefixes if p not in prefixes]
        known_routers = len(routers) - (0 if new_router else 1)
        if learn:
            routers[mac] = routers.get(mac, 0) + 1
            routers.move_to_end(mac)
            if len(routers) > MAX_ROUTERS:
                routers.popitem(last=False)
                self.state.stats.table_overflows["nd_routers"] += 1
            for p in msg.prefixes:
                prefixes[p] = mac
                prefixes.move_to_end(p)
            while len(prefixes) > MAX_KNOWN_PREFIXES:
                prefixes.popitem(last=False)
                self.state.stats.table_overflows["nd_prefixes"] += 1
        if msg.source_mac is not None:
            self._learn(pkt.src, msg.source_mac, learn)
        fields: dict[str, Any] = {
            "nd.router_lifetime": msg.lifetime,
            "nd.managed": bool(msg.flags & 0x80),
            "nd.other_config": bool(msg.flags & 0x40),
            "nd.prefixes": [prefix_text(*p) for p in msg.prefixes[:MAX_PREFIXES_SHOWN]],
            "nd.new_router": new_router,
            "nd.known_routers": known_routers,
            "nd.new_prefixes": [prefix_text(*p) for p in new[:MAX_PREFIXES_SHOWN]],
            "nd.new_prefix_count": len(new),
        }
        return fields, new_router or bool(new)


_IP_AT: Final = (0, 14, 16, 18, 20, 22)
"""Where an IPv6 header may start when extension headers sit before the ICMPv6 one: a
reassembled datagram, Ethernet, Linux cooked v1, one VLAN tag, cooked v2, two VLAN tags."""


def _hop_limit(pkt: Packet) -> int | None:
    """The IPv6 hop limit (also behind extension headers: one cannot hide it that way)."""
    data = pkt.data
    for ip in (pkt.l4 - 44, *_IP_AT) if not pkt.v6_headers else _IP_AT:
        if (ip >= 0 and ip + 40 <= pkt.l4 and data[ip] >> 4 == 6
                and data[ip + 8:ip + 24] == pkt.src and data[ip + 24:ip + 40] == pkt.dst):
            return data[ip + 7]
    return None


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
