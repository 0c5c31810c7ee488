"""Header decoder and DNS parser on crafted packets of every supported shape."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, CookedLinux, Dot1Q, Ether
from scapy.packet import Raw

from agent.netdecode import dns
from agent.netdecode.layers import (
    BAD_IP_HEADER,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    NOT_IP,
    PROTO_FRAGMENT,
    TRUNCATED,
    UNSUPPORTED_LINKTYPE,
    decode,
    quoted_transport,
)


def test_ipv4_tcp_syn() -> None:
    frame = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80,
                                                                       flags="S"))
    family, src, dst, proto, sport, dport, flags, l4, end = decode(frame, LINKTYPE_ETHERNET)
    assert (family, src, dst, proto) == (4, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 6)
    assert (sport, dport, flags) == (1234, 80, 0x02)
    assert l4 == end == len(frame)


def test_vlan_stack_and_ip_options() -> None:
    frame = bytes(Ether() / Dot1Q(vlan=10) / Dot1Q(vlan=20)
                  / IP(options=b"\x01\x01\x01\x01") / UDP(sport=5, dport=53) / b"abc")
    r = decode(frame, LINKTYPE_ETHERNET)
    assert not isinstance(r, str)
    assert r[3] == 17 and r[5] == 53
    assert frame[r[7]:r[8]] == b"abc"


def test_ipv6_extension_headers_and_fragments() -> None:
    frame = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
                  / TCP(dport=22, flags="S"))
    r = decode(frame, LINKTYPE_ETHERNET)
    assert not isinstance(r, str) and r[0] == 6 and r[3] == 6 and r[5] == 22
    later = bytes(Ether() / IPv6() / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"x" * 16))
    r = decode(later, LINKTYPE_ETHERNET)
    assert not isinstance(r, str) and r[3] == PROTO_FRAGMENT
    v4frag = bytes(Ether() / IP(frag=10, proto=17) / Raw(b"x" * 16))
    r = decode(v4frag, LINKTYPE_ETHERNET)
    assert not isinstance(r, str) and r[3] == PROTO_FRAGMENT


def test_other_link_types() -> None:
    raw = bytes(IP(dst="10.0.0.2") / ICMP(type=8))
    r = decode(raw, LINKTYPE_RAW)
    assert not isinstance(r, str) and (r[3], r[4]) == (1, 8)
    sll = bytes(CookedLinux(proto=0x0800) / IP() / UDP(dport=53))
    r = decode(sll, LINKTYPE_LINUX_SLL)
    assert not isinstance(r, str) and r[5] == 53
    assert decode(raw, 999) == UNSUPPORTED_LINKTYPE


def test_arp_and_non_ip() -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frame = bytes(eth / ARP(op=2, psrc="10.0.0.1"))
    r = decode(frame, LINKTYPE_ETHERNET)
    assert not isinstance(r, str) and r[0] == 0 and r[1] == bytes.fromhex("020000000001")
    assert decode(bytes(Ether(type=0x88CC) / (b"lldp" * 10)), LINKTYPE_ETHERNET) == NOT_IP


@pytest.mark.parametrize("cut", [0, 5, 13, 20, 33, 36, 40])
def test_truncations_give_reasons(cut: int) -> None:
    frame = bytes(Ether() / IP() / TCP())
    assert decode(frame[:cut], LINKTYPE_ETHERNET) in (TRUNCATED, BAD_IP_HEADER)


def test_icmp_quote_gives_the_probed_port() -> None:
    frame = bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3)
                  / IPerror(src="10.0.0.1", dst="10.0.0.2") / UDPerror(sport=9, dport=161))
    r = decode(frame, LINKTYPE_ETHERNET)
    assert not isinstance(r, str)
    assert quoted_transport(frame, r[7] + 4, r[8], 4) == (17, bytes([10, 0, 0, 2]), 161)
    assert quoted_transport(frame, r[7] + 4, r[7] + 10, 4) is None


def _dns_payload(**kw: object) -> bytes:
    return bytes(DNS(**kw))


def test_dns_question_and_answer() -> None:
    q = _dns_payload(id=7, rd=1, qd=DNSQR(qname="WWW.Example.COM", qtype="TXT"))
    msg = dns.parse(q, 0, len(q))
    assert not isinstance(msg, str)
    assert (msg.id, msg.is_response, msg.name, dns.qtype_name(msg.qtype)) == (
        7, False, "www.example.com", "TXT")
    a = _dns_payload(id=7, qr=1, rcode=3, qd=DNSQR(qname="x.example.com"))
    msg = dns.parse(a, 0, len(a))
    assert not isinstance(msg, str) and msg.is_response and dns.rcode_name(msg.rcode) == "NXDOMAIN"
    assert dns.qtype_name(4242) == "TYPE4242"


def test_dns_hostile_names_are_escaped_or_refused() -> None:
    header = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    weird = header + b"\x05a\xff\x1b[\x00\x07example\x03com\x00" + b"\x00\x01\x00\x01"
    msg = dns.parse(weird, 0, len(weird))
    assert not isinstance(msg, str)
    assert msg.name == "a\\255\\027\\091\\000.example.com"
    assert all(32 <= ord(ch) < 127 for ch in msg.name)
    huge = header + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"
    assert dns.parse(huge, 0, len(huge)) == dns.NAME_TOO_LONG
    loop = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert dns.parse(loop, 0, len(loop)) == dns.POINTER_LOOP
    assert dns.parse(header[:8], 0, 8) == dns.TRUNCATED
    assert dns.parse(header + b"\x40abc", 0, 16) == dns.BAD_LABEL
    no_q = b"\x00\x01\x01\x00" + b"\x00" * 8
    assert dns.parse(no_q, 0, 12) == dns.NO_QUESTION


def test_dns_compression_pointer_is_followed() -> None:
    header = b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
    body = b"\x07example\x03com\x00"
    # A question name "www" + pointer to offset 12+? : put the full name first, then a pointer.
    msg = header + b"\x03www" + b"\xc0\x14" + b"\x00\x01\x00\x01" + body
    pointer_target = len(header) + 4 + 2 + 4
    msg = msg.replace(b"\xc0\x14", bytes([0xC0, pointer_target]))
    parsed = dns.parse(msg, 0, len(msg))
    assert not isinstance(parsed, str) and parsed.name == "www.example.com"


def test_icmpv6_port_unreachable_quote() -> None:
    from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6  # noqa: PLC0415

    frame = bytes(Ether() / IPv6(src="2001:db8::2", dst="2001:db8::1")
                  / ICMPv6DestUnreach(code=4) / IPerror6(src="2001:db8::1", dst="2001:db8::2")
                  / UDPerror(sport=9, dport=5353))
    r = decode(frame, LINKTYPE_ETHERNET)
    assert not isinstance(r, str) and (r[3], r[4], r[5]) == (58, 1, 4)
    quoted = quoted_transport(frame, r[7] + 4, r[8], 6)
    assert quoted is not None and quoted[0] == 17 and quoted[2] == 5353
