"""Craft the IPv6 neighbour-discovery rule fixtures (scapy) into ``rules/network/*.tests/``.

Run from the repository root: ``.venv/bin/python -m tests.network.make_nd_fixtures``. The
segment is 2001:db8:1::/64 with its router fe80::1 (``ROUTER_MAC``); the monitored server is
2001:db8:1::10; the attacker's MAC is ``ATTACKER_MAC`` (what parasite6, fake_router6 and a
scapy one-liner send).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from tests.network import craft as c

RULES = Path(__file__).resolve().parents[2] / "rules" / "network"
T0 = c.T0
ROUTER_IP, ROUTER_MAC = "fe80::1", "02:00:00:00:00:01"
ROUTER_GUA = "2001:db8:1::1"
SERVER_IP, SERVER_MAC = "2001:db8:1::10", "02:00:00:00:00:10"
CLIENT_IP, CLIENT_MAC = "2001:db8:1::20", "02:00:00:00:00:20"
ATTACKER_IP, ATTACKER_MAC = "fe80::66", "02:00:00:00:00:66"
PREFIX, ROGUE_PREFIX = "2001:db8:1::", "2001:db8:bad::"
ALL_NODES, ALL_ROUTERS = "ff02::1", "ff02::2"


def _l2(src: str, dst: str = "33:33:00:00:00:01") -> Ether:
    return Ether(src=src, dst=dst)


def ns(ts: float, src_ip: str, src_mac: str, target: str) -> Packet:
    solicited = "ff02::1:ff" + target.rsplit(":", maxsplit=1)[-1].rjust(4, "0")[-2:]
    pkt = _l2(src_mac) / IPv6(src=src_ip, dst=solicited, hlim=255) / ICMPv6ND_NS(tgt=target)
    if src_ip != "::":
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return c.at(pkt, ts)


def na(ts: float, src_ip: str, mac: str, target: str, dst: str = ALL_NODES,
       solicited: bool = False, router: bool = False, hlim: int = 255) -> Packet:
    return c.at(_l2(mac) / IPv6(src=src_ip, dst=dst, hlim=hlim)
                / ICMPv6ND_NA(tgt=target, R=int(router), S=int(solicited), O=1)
                / ICMPv6NDOptDstLLAddr(lladdr=mac), ts)


def ra(ts: float, src_ip: str, mac: str, prefix: str, lifetime: int = 1800) -> Packet:
    return c.at(_l2(mac) / IPv6(src=src_ip, dst=ALL_NODES, hlim=255)
                / ICMPv6ND_RA(routerlifetime=lifetime)
                / ICMPv6NDOptSrcLLAddr(lladdr=mac)
                / ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=64), ts)


def rs(ts: float, src_ip: str, mac: str) -> Packet:
    return c.at(_l2(mac) / IPv6(src=src_ip, dst=ALL_ROUTERS, hlim=255) / ICMPv6ND_RS()
                / ICMPv6NDOptSrcLLAddr(lladdr=mac), ts)


def redirect(ts: float, src_ip: str, mac: str, target: str, dst: str) -> Packet:
    return c.at(_l2(mac, SERVER_MAC) / IPv6(src=src_ip, dst=SERVER_IP, hlim=255)
                / ICMPv6ND_Redirect(tgt=target, dst=dst) / ICMPv6NDOptDstLLAddr(lladdr=mac), ts)


def routine(start: float = T0, minutes: int = 10) -> list[Packet]:
    """An ordinary IPv6 segment: periodic RAs, DAD, address resolution both ways."""
    pkts = [rs(start, "fe80::10", SERVER_MAC), ra(start + 0.01, ROUTER_IP, ROUTER_MAC, PREFIX),
            ns(start + 0.1, "::", SERVER_MAC, SERVER_IP)]  # duplicate address detection
    for m in range(minutes):
        t = start + 1 + m * 60
        pkts.append(ns(t, SERVER_IP, SERVER_MAC, ROUTER_GUA))
        pkts.append(na(t + 0.001, ROUTER_GUA, ROUTER_MAC, ROUTER_GUA, SERVER_IP, True, True))
        pkts.append(ns(t + 5, CLIENT_IP, CLIENT_MAC, SERVER_IP))
        pkts.append(na(t + 5.001, SERVER_IP, SERVER_MAC, SERVER_IP, CLIENT_IP, True))
        if m % 3 == 2:
            pkts.append(ra(t + 20, ROUTER_IP, ROUTER_MAC, PREFIX))
    pkts.append(na(start + 30, CLIENT_IP, CLIENT_MAC, CLIENT_IP))  # unsolicited, same MAC
    return pkts


def na_spoof() -> list[Packet]:
    pkts = routine()
    for i in range(5):  # parasite6: unsolicited overriding NAs for the router's address
        pkts.append(na(T0 + 200 + i, ROUTER_GUA, ATTACKER_MAC, ROUTER_GUA, router=True))
    return pkts


def rogue_ra() -> list[Packet]:
    pkts = routine()
    pkts += [ra(T0 + 250 + i * 3, ATTACKER_IP, ATTACKER_MAC, ROGUE_PREFIX) for i in range(3)]
    return pkts


def new_prefix() -> list[Packet]:
    pkts = routine()
    pkts.append(ra(T0 + 300, ROUTER_IP, ROUTER_MAC, ROGUE_PREFIX))
    return pkts


def redirects() -> list[Packet]:
    pkts = routine()
    pkts.append(redirect(T0 + 120, ROUTER_IP, ATTACKER_MAC, ATTACKER_IP, "2001:db8:99::53"))
    return pkts


def off_link_spoof() -> list[Packet]:
    """parasite6's NAs routed from off-link (hop limit 64): every host drops them."""
    pkts = routine()
    for i in range(5):
        pkts.append(na(T0 + 200 + i, ROUTER_GUA, ATTACKER_MAC, ROUTER_GUA, router=True,
                       hlim=64))
    return pkts


def expect(rule: str, **group: str) -> dict[str, Any]:
    return {"rule": rule, "group": {k.replace("__", "."): v for k, v in group.items()}}


CASES: dict[str, list[tuple[Any, ...]]] = {
    "ipv6_nd_spoofing": [
        ("unsolicited NAs give the router's address the attacker's MAC", na_spoof,
         [expect("ipv6_nd_spoofing", nd__target_ip=ROUTER_GUA)]),
        ("routine address resolution, DAD and a repeated unsolicited NA", routine, []),
        ("the same NAs routed from off-link (hop limit 64): hosts drop them", off_link_spoof,
         [], "off_link.pcap"),
    ],
    "ipv6_rogue_router": [
        ("a second router MAC advertises another prefix", rogue_ra,
         [expect("ipv6_rogue_router", source__mac="02-00-00-00-00-66")]),
        ("one router advertising every few minutes", routine, []),
    ],
    "ipv6_new_prefix": [
        ("the known router starts advertising a new prefix", new_prefix,
         [expect("ipv6_new_prefix", source__mac="02-00-00-00-00-01")]),
        ("one router, one prefix", routine, []),
    ],
    "ipv6_nd_redirect": [
        ("a redirect toward the attacker", redirects,
         [expect("ipv6_nd_redirect", destination__ip=SERVER_IP)]),
        ("no redirect on an ordinary segment", routine, []),
    ],
}


def main() -> int:
    for rule, cases in CASES.items():
        tdir = RULES / f"{rule}.tests"
        tdir.mkdir(exist_ok=True)
        doc_cases = []
        for name, scenario, expected, *named in cases:
            fname = named[0] if named else ("attack" if expected else "benign") + ".pcap"
            c.write(tdir / fname, scenario())
            doc_cases.append({"name": name, "input": fname, "expect": expected})
        (tdir / "expect.yml").write_text(yaml.safe_dump({"cases": doc_cases}, sort_keys=False))
        print(f"{rule}: {len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
