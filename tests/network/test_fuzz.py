"""Hostile bytes never crash the decoder or the processor: hypothesis, scapy fuzz(), bad pcaps."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import fuzz

from agent.config import NetworkSection
from agent.netdecode import dns
from agent.netdecode.layers import decode
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader, RawPacket
from agent.netevents.processor import PacketProcessor

LINKTYPES = st.sampled_from([0, 1, 12, 101, 113, 228, 229, 276, 9999])
HEADERS = [bytes(Ether() / IP() / UDP(dport=53)), bytes(Ether() / IPv6() / TCP()),
           bytes(Ether() / IP() / TCP(sport=53, dport=40000, flags="PA")),
           bytes(Ether() / IP() / TCP(sport=40000, dport=53, flags="A")),
           bytes(Ether() / Dot1Q() / IP() / ICMP(type=3)), bytes(Ether() / ARP())]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), linktype=LINKTYPES)
def test_decode_random_bytes(data: bytes, linktype: int) -> None:
    result = decode(data, linktype)
    assert isinstance(result, (str, tuple))


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(HEADERS), tail=st.binary(max_size=120), cut=st.integers(0, 200))
def test_processor_on_mutated_real_headers(prefix: bytes, tail: bytes, cut: int) -> None:
    frame = (prefix + tail)[: max(cut, 0) or None]
    proc = PacketProcessor(NetworkSection())
    events = proc.process([RawPacket(1.0, 1, frame, len(frame))])
    events += proc.flush()
    for event in events:
        for value in event.fields.values():
            if isinstance(value, str):
                assert value.isprintable()


@settings(max_examples=300, deadline=None)
@given(framing=st.integers(0, 0xFFFF), payload=st.binary(max_size=300))
def test_dns_over_tcp_payloads_never_count_as_decode_errors(framing: int, payload: bytes) -> None:
    """Random bytes after a TCP header on port 53 (the middle of a stream, or hostile): never an
    exception, never a decode error, and a DNS event only for a message that parsed."""
    frame = bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1")
                  / TCP(sport=40000, dport=53, flags="PA") / (framing.to_bytes(2, "big")
                                                              + payload))
    proc = PacketProcessor(NetworkSection())
    events = proc.process([RawPacket(1.0, 1, frame, len(frame))]) + proc.flush()
    assert not proc.stats.errors
    dns_events = [e for e in events if e.logsource.category == "dns"]
    assert len(dns_events) == proc.stats.dns_queries + sum(proc.stats.dns_responses.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_dns_parse_random(data: bytes) -> None:
    result = dns.parse(data, 0, len(data))
    if not isinstance(result, str):
        assert result.name.isascii() and result.name.isprintable()
        assert len(result.name) <= 255 * 4


def test_scapy_fuzz_packets_through_the_processor() -> None:
    random.seed(11)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    templates = [
        eth / IP(dst="10.0.0.1") / fuzz(TCP()),
        eth / IP(dst="10.0.0.1") / UDP(dport=53) / fuzz(DNS(qd=DNSQR())),
        eth / fuzz(IP(dst="10.0.0.1")) / ICMP(),
        eth / fuzz(IPv6(src="2001:db8::1", dst="2001:db8::2")) / UDP(),
        eth / fuzz(ARP(psrc="10.0.0.1", pdst="10.0.0.2", hwdst="00:00:00:00:00:00")),
        eth / IP(dst="10.0.0.1") / ICMP(type=3, code=3) / fuzz(IP(dst="10.0.0.2")) / fuzz(UDP()),
    ]
    proc = PacketProcessor(NetworkSection())
    batch = []
    for i in range(1500):
        frame = bytes(templates[i % len(templates)])
        batch.append(RawPacket(1.0 + i * 0.001, 1, frame, len(frame)))
    proc.process(batch)
    proc.flush()
    assert proc.stats.packets == 1500


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_capture_reader_never_crashes_on_garbage(tmp_path_factory: object, data: bytes) -> None:
    path = Path(str(tmp_path_factory.mktemp("pcap"))) / "x.pcap"  # type: ignore[attr-defined]
    for head in (b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\0" * 16,
                 b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a" + b"\0" * 16):
        path.write_bytes(head + data)
        try:
            with CaptureReader(path) as reader:
                for _ in reader:
                    pass
        except CaptureFormatError:
            pass
