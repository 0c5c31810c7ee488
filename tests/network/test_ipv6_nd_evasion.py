"""Adversarial review of the ND analyzer: messages the hosts drop (routed from off-link,
fragmented, behind extension headers) and floods of random neighbours must not rewrite what
the capture learned."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptPrefixInfo,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.packet import Packet, Raw

from agent.config import NetworkSection
from agent.netevents.analyzers.ipv6_nd import NeighbourTable
from tests.network import make_nd_fixtures as nd
from tests.network.craft import T0, at
from tests.network.test_ipv6_nd import nd_events

ATTACKER_MAC = "02-00-00-00-00-66"
ROUTER_MAC = "02-00-00-00-00-01"


def spoof(ts: float, hlim: int = 255) -> list:  # type: ignore[type-arg]
    return [nd.na(ts, nd.ROUTER_GUA, nd.ATTACKER_MAC, nd.ROUTER_GUA, router=True, hlim=hlim)]


def changes(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if "nd.target_mac_previous" in e]


def test_an_off_link_spoof_does_not_hide_the_on_link_one() -> None:
    """A routed NA (hop limit 64) is dropped by every host; learning from it made the later
    real spoof (same MAC, hop limit 255) look like a routine binding."""
    pkts = nd.routine() + spoof(T0 + 200, hlim=64) + spoof(T0 + 201)
    _, events = nd_events(pkts)
    off, on = changes(events)[:2]  # (later, the router's own NA restores its binding)
    assert off["nd.hop_limit_valid"] is False
    assert on["nd.hop_limit_valid"] is True
    assert on["nd.target_mac"] == ATTACKER_MAC and on["nd.target_mac_previous"] == ROUTER_MAC


def test_an_off_link_router_advertisement_is_not_the_trusted_first_router() -> None:
    """Trust on first use must not trust what hosts drop: an off-link RA seen first used to
    make the real router 'new while another is known' (the rogue router rule on it)."""
    pkts = [nd.ra(T0, nd.ATTACKER_IP, nd.ATTACKER_MAC, nd.ROGUE_PREFIX)]
    pkts[0][IPv6].hlim = 64
    pkts.append(nd.ra(T0 + 1, nd.ROUTER_IP, nd.ROUTER_MAC, nd.PREFIX))
    _, events = nd_events(pkts)
    real = [e for e in events if e.get("source.mac") == ROUTER_MAC]
    assert real[0]["nd.new_router"] is True and real[0]["nd.known_routers"] == 0


def test_the_hop_limit_is_read_behind_extension_headers() -> None:
    pkt = at(nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", hlim=64)
             / IPv6ExtHdrDestOpt() / ICMPv6ND_NA(tgt=nd.ROUTER_GUA, O=1)
             / ICMPv6NDOptDstLLAddr(lladdr=nd.ATTACKER_MAC), T0 + 200)
    _, events = nd_events([*nd.routine(), pkt, *spoof(T0 + 201)])
    off, on = changes(events)[:2]  # (later, the router's own NA restores its binding)
    assert off["nd.hop_limit_valid"] is False
    assert on["nd.target_mac_previous"] == ROUTER_MAC


def test_a_fragmented_advertisement_is_flagged_and_teaches_nothing() -> None:
    """Hosts drop fragmented ND (RFC 6980); fragmenting is how RA guard is passed (RFC 7113)."""
    whole = (nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", hlim=255)
             / IPv6ExtHdrFragment() / ICMPv6ND_NA(tgt=nd.ROUTER_GUA, O=1)
             / ICMPv6NDOptDstLLAddr(lladdr=nd.ATTACKER_MAC))
    frags = [at(nd._l2(nd.ATTACKER_MAC) / f, T0 + 200 + i * 0.001)
             for i, f in enumerate(fragment6(whole[IPv6], 64))]
    assert len(frags) >= 2
    _, events = nd_events(nd.routine() + frags + spoof(T0 + 201))
    frag, on = changes(events)[:2]
    assert frag["nd.fragmented"] is True
    assert on["nd.target_mac_previous"] == ROUTER_MAC and "nd.fragmented" not in on


def test_a_flood_of_random_neighbours_cannot_evict_a_settled_binding() -> None:
    """The router's binding, seen many times, used to be the oldest entry a flood pushed out:
    the spoof that followed was a 'new neighbour', not a change."""
    flood = [nd.na(T0 + 100 + i * 0.001, f"2001:db8:1::{i + 0x1000:x}",
                   f"02:00:00:01:{i >> 8:02x}:{i & 255:02x}", f"2001:db8:1::{i + 0x1000:x}")
             for i in range(200)]
    proc, events = nd_events(nd.routine(minutes=2) + flood + spoof(T0 + 200),
                             NetworkSection(max_nd_neighbours=16))
    on = changes(events)[0]
    assert on["nd.target_mac_previous"] == ROUTER_MAC
    assert proc.stats.table_overflows["nd_neighbours"] >= 180


def test_a_table_full_of_settled_neighbours_takes_new_ones_once_some_are_stale() -> None:
    def twice(ts: float, i: int) -> list:  # type: ignore[type-arg]
        ip, mac = f"2001:db8:2::{i:x}", f"02:00:00:02:00:{i:02x}"
        return [nd.na(ts, ip, mac, ip), nd.na(ts + 0.001, ip, mac, ip)]
    pkts = [p for i in range(16) for p in twice(T0 + i * 0.01, i)]
    pkts += twice(T0 + 10, 99)  # table full of settled entries, none stale: not learned
    pkts += twice(T0 + 4000, 100)  # an hour later: the oldest makes room
    pkts += [nd.na(T0 + 4001, "2001:db8:2::64", nd.ATTACKER_MAC, "2001:db8:2::64")]
    _, events = nd_events(pkts, NetworkSection(max_nd_neighbours=16))
    [change] = changes(events)
    assert change["nd.target_ip"] == "2001:db8:2::64"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from([133, 134, 135, 136, 137]), body=st.binary(max_size=120),
       hlim=st.integers(0, 255), ext=st.booleans(), frag=st.booleans())
def test_random_nd_behind_extension_headers_or_fragmented_never_crash(
        kind: int, body: bytes, hlim: int, ext: bool, frag: bool) -> None:
    ip = IPv6(src="fe80::66", dst="ff02::1", hlim=hlim)
    inner = Raw(bytes((kind, 0, 0, 0)) + body)
    pkt = ip / IPv6ExtHdrDestOpt() / inner if ext else ip / inner
    if frag:
        whole = ip / IPv6ExtHdrFragment() / (IPv6ExtHdrDestOpt() if ext else Raw(b"")) / inner
        pkts = [at(nd._l2(nd.ATTACKER_MAC) / f, T0) for f in fragment6(whole, 48)]
    else:
        pkts = [at(nd._l2(nd.ATTACKER_MAC) / pkt, T0)]
    _, events = nd_events(pkts)
    assert len(events) <= 1


def test_the_neighbour_table_never_exceeds_its_size() -> None:
    table = NeighbourTable(16)
    for i in range(500):
        table.learn(bytes([i % 7, i % 53]) * 8, bytes([i % 3]) * 6, T0 + i * 10)
        assert len(table) <= 16


def test_router_advertisements_without_a_source_link_layer_option_are_told_apart() -> None:
    """Every RA without the option used to share one empty router key: after the first, a
    rogue RA that left the option out was a known router."""
    def bare_ra(ts: float, src: str, mac: str) -> Packet:
        return at(nd._l2(mac) / IPv6(src=src, dst="ff02::1", hlim=255)
                  / ICMPv6ND_RA(routerlifetime=1800)
                  / ICMPv6NDOptPrefixInfo(prefix=nd.PREFIX, prefixlen=64), ts)
    pkts = [bare_ra(T0, nd.ROUTER_IP, nd.ROUTER_MAC), bare_ra(T0 + 10, nd.ROUTER_IP, nd.ROUTER_MAC),
            bare_ra(T0 + 20, nd.ATTACKER_IP, nd.ATTACKER_MAC)]
    _, events = nd_events(pkts)
    assert [(e["nd.new_router"], e["nd.known_routers"]) for e in events] == [
        (True, 0), (False, 0), (True, 1)]
