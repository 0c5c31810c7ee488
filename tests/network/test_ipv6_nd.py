"""IPv6 neighbour discovery analyzer: spoofed advertisements, rogue routers, redirects, and
hostile or malformed messages (crafted with scapy)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.packet import Packet, Raw

from agent.config import NetworkSection
from agent.netevents.processor import PacketProcessor
from tests.network import make_nd_fixtures as nd
from tests.network.craft import T0, at
from tests.network.test_processor import raw


def nd_events(pkts: list[Packet], settings: NetworkSection | None = None,
              ) -> tuple[PacketProcessor, list[dict[str, Any]]]:
    proc = PacketProcessor(settings or NetworkSection())
    events = proc.process(raw(pkts)) + proc.flush()
    return proc, [e.fields for e in events if e.logsource.category == "ipv6_nd"]


def test_an_advertisement_rebinding_a_known_address_names_both_macs() -> None:
    _, events = nd_events(nd.na_spoof())
    spoofs = [e for e in events if "nd.target_mac_previous" in e]
    first = spoofs[0]
    assert first["nd.target_ip"] == nd.ROUTER_GUA
    assert first["nd.target_mac"] == "02-00-00-00-00-66"
    assert first["nd.target_mac_previous"] == "02-00-00-00-00-01"
    assert first["nd.solicited"] is False and first["nd.override"] is True


def test_routine_segment_has_no_rebinding_and_one_router() -> None:
    _, events = nd_events(nd.routine())
    assert not any("nd.target_mac_previous" in e for e in events)
    ras = [e for e in events if e["nd.type"] == "router_advertisement"]
    assert ras[0]["nd.new_router"] is True and ras[0]["nd.known_routers"] == 0
    assert all(not e["nd.new_router"] and e["nd.new_prefix_count"] == 0 for e in ras[1:])
    assert ras[0]["nd.prefixes"] == ["2001:db8:1::/64"]
    # solicited advertisements confirming a known binding are not events
    assert sum(e["nd.type"] == "neighbor_advertisement" for e in events) <= 3


def test_rogue_router_is_new_while_another_is_known() -> None:
    _, events = nd_events(nd.rogue_ra())
    rogue = [e for e in events if e.get("source.mac") == "02-00-00-00-00-66"]
    assert rogue[0]["nd.new_router"] is True and rogue[0]["nd.known_routers"] == 1
    assert rogue[0]["nd.new_prefixes"] == ["2001:db8:bad::/64"]


def test_redirect_fields() -> None:
    _, events = nd_events(nd.redirects())
    [r] = [e for e in events if e["nd.type"] == "redirect"]
    assert r["nd.target_ip"] == nd.ATTACKER_IP and r["nd.redirect_destination"] == "2001:db8:99::53"
    assert r["destination.ip"] == nd.SERVER_IP and r["nd.target_mac"] == "02-00-00-00-00-66"


def test_off_link_hop_limit_is_flagged() -> None:
    _, [e] = nd_events([nd.na(T0, nd.ROUTER_GUA, nd.ATTACKER_MAC, nd.ROUTER_GUA, hlim=64)])
    assert e["nd.hop_limit_valid"] is False


def test_malformed_messages_are_counted_not_fatal() -> None:
    base = nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", hlim=255)
    pkts = [
        at(base / ICMPv6ND_NA(tgt="2001:db8::1") / Raw(b"\x02\x00" + b"\x00" * 6), T0),  # len 0
        at(base / ICMPv6ND_NA(tgt="2001:db8::1") / Raw(b"\x02\x05\x00"), T0 + 1),  # past end
        at(base / Raw(b""), T0 + 2),
        at(nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", nh=58)
           / Raw(b"\x88\x00\x00\x00\x00"), T0 + 3),  # an NA cut after 1 byte of its body
        at(base / ICMPv6ND_NS(tgt="2001:db8::1", code=3), T0 + 4),
    ]
    proc, events = nd_events(pkts)
    assert events == []
    errors = proc.stats.errors
    assert errors["nd_bad_option"] == 2 and errors["nd_truncated"] == 1
    assert errors["nd_bad_code"] == 1


def test_neighbour_table_is_bounded() -> None:
    pkts = [nd.na(T0 + i * 0.01, f"2001:db8::{i:x}", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                  f"2001:db8::{i:x}") for i in range(40)]
    proc, _ = nd_events(pkts, NetworkSection(max_nd_neighbours=16))
    assert proc.stats.table_overflows["nd_neighbours"] == 24


def test_option_walk_is_bounded() -> None:
    many = b"".join(b"\x0e\x01" + bytes(6) for _ in range(200))  # 200 unknown 8-byte options
    pkt = at(nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", hlim=255)
             / ICMPv6ND_NA(tgt="2001:db8::7") / Raw(many + b"\x02\x01" + bytes(6)), T0)
    _, events = nd_events([pkt])
    assert events == []  # the target option past MAX_OPTIONS is never read: no MAC, no event


def test_a_solicitation_rebinding_a_known_address_is_an_event() -> None:
    pkts = [nd.ns(T0, nd.SERVER_IP, nd.SERVER_MAC, nd.ROUTER_GUA),
            nd.ns(T0 + 1, nd.SERVER_IP, nd.ATTACKER_MAC, nd.ROUTER_GUA),  # spoofed source
            nd.ns(T0 + 2, nd.SERVER_IP, nd.ATTACKER_MAC, nd.ROUTER_GUA)]
    _, [e] = nd_events(pkts)
    assert e["nd.type"] == "neighbor_solicitation" and e["nd.target_ip"] == nd.SERVER_IP
    assert e["nd.target_mac"] == "02-00-00-00-00-66"
    assert e["nd.target_mac_previous"] == "02-00-00-00-00-10"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from([133, 134, 135, 136, 137]), body=st.binary(max_size=120),
       hlim=st.integers(0, 255))
def test_random_nd_bodies_never_crash(kind: int, body: bytes, hlim: int) -> None:
    pkt = at(nd._l2(nd.ATTACKER_MAC) / IPv6(src="fe80::66", dst="ff02::1", nh=58, hlim=hlim)
             / Raw(bytes((kind, 0, 0, 0)) + body), T0)
    proc, events = nd_events([pkt])
    assert len(events) <= 1
    assert sum(proc.stats.errors.values()) + len(events) <= 1
