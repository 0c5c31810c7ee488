"""TCP/IP fingerprint fields and nmap OS-detection probe shapes (agent/netevents/fingerprint.py).

The real ``nmap -O`` capture (tests/fixtures/pcap/tools/nmap_os_detection.pcap) gives the
``nmap_os_detection`` alert once, source the scanner; ordinary stacks' SYNs, pings and the
benign corpus carry no probe shape; hostile option bytes never raise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.netevents.analyzers.base import Packet
from agent.netevents.fingerprint import icmp_fields, tcp_fields
from agent.offline.clock import run
from agent.offline.pcap import fixture_config, pcap_events

REPO = Path(__file__).resolve().parents[2]
OS_PCAP = REPO / "tests" / "fixtures" / "pcap" / "tools" / "nmap_os_detection.pcap"
SRC, DST = bytes((198, 18, 0, 20)), bytes((198, 18, 0, 10))
NMAP_TS = ("Timestamp", (0xFFFFFFFF, 0))
T_OPTS = [("WScale", 10), ("NOP", None), ("MSS", 265), NMAP_TS, ("SAckOK", b"")]


def alerts_of(path: Path) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    report = load_rules([REPO / "rules" / "network"])
    assert not report.errors
    result = run(Engine(report.ruleset), pcap_events(path, fixture_config(path)),
                 horizon(report, 5.0))
    return [(a.rule.title, a.rule.tags, a.group) for a in result.alerts.values()]


def tcp_packet(flags: int, window: int, options: list[Any], df: bool = False) -> Packet:
    frame = bytes(Ether() / IP(src="198.18.0.20", dst="198.18.0.10", ttl=50,
                               flags="DF" if df else 0)
                  / TCP(sport=40000, dport=22, flags=flags, window=window, options=options))
    hlen = (frame[14 + 20 + 12] >> 4) * 4
    return Packet(0.0, 4, SRC, DST, 6, 40000, 22, flags, frame, 34 + hlen, len(frame),
                  len(frame), None)


def echo(code: int, tos: int, payload: bytes) -> Packet:
    frame = bytes(Ether() / IP(src="198.18.0.20", dst="198.18.0.10", tos=tos)
                  / ICMP(type=8, code=code, id=7, seq=295) / payload)
    return Packet(0.0, 4, SRC, DST, 1, 8, code, 0, frame, 38, len(frame), len(frame), None)


def test_nmap_os_capture_gives_one_os_detection_alert_from_the_scanner() -> None:
    events = [e.fields for e in pcap_events(OS_PCAP, fixture_config(OS_PCAP))]
    shapes = {f["network.probe_shape"] for f in events if "network.probe_shape" in f}
    assert shapes == {f"nmap_seq{i}" for i in range(1, 7)} | {
        "nmap_ecn", "nmap_ie1", "nmap_ie2", *(f"nmap_t{i}" for i in range(2, 8))}
    assert {f["source.ip"] for f in events if "network.probe_shape" in f} == {"198.18.0.20"}
    found = [(tags, g) for title, tags, g in alerts_of(OS_PCAP)
             if title.startswith("Remote OS fingerprinting")]
    assert len(found) == 1 and "attack.t1046" in found[0][0]
    assert found[0][1] == {"source.ip": "198.18.0.20", "destination.ip": "198.18.0.10"}


def test_fields_of_an_nmap_t7_probe() -> None:
    opts = [("WScale", 15), *T_OPTS[1:]]
    f = tcp_fields(tcp_packet(0x29, 65535, opts))
    assert f["network.probe_shape"] == "nmap_t7"
    assert (f["tcp.window"], f["tcp.window_scale"], f["tcp.mss"]) == (65535, 15, 265)
    assert f["tcp.options"] == "ws,nop,mss,ts,sack"
    assert (f["ip.ttl"], f["ip.df"]) == (50, False)
    # the same probe with a scale of 10 is not T7 (T2-T6 use 10, T7 15)
    assert "network.probe_shape" not in tcp_fields(tcp_packet(0x29, 65535, T_OPTS))


def test_ecn_probe_needs_ece_and_cwr() -> None:
    opts = [("WScale", 10), ("NOP", None), ("MSS", 1460), ("SAckOK", b""), ("NOP", None),
            ("NOP", None)]
    f = tcp_fields(tcp_packet(0xC2, 3, opts))
    assert f["network.probe_shape"] == "nmap_ecn" and f["tcp.flags.ece"] and f["tcp.flags.cwr"]
    assert "network.probe_shape" not in tcp_fields(tcp_packet(0x02, 3, opts))


def test_ordinary_stacks_syns_have_no_shape() -> None:
    linux = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
             ("WScale", 7)]
    f = tcp_fields(tcp_packet(0x02, 64240, linux, df=True))
    assert "network.probe_shape" not in f and f["tcp.options"] == "mss,sack,ts,nop,ws"
    # nmap's SEQ1 layout with an ordinary timestamp value is not the probe
    seq1 = [("WScale", 10), ("NOP", None), ("MSS", 1460), ("Timestamp", (1, 0)),
            ("SAckOK", b"")]
    assert "network.probe_shape" not in tcp_fields(tcp_packet(0x02, 1, seq1))
    assert "network.probe_shape" not in tcp_fields(tcp_packet(0x02, 1024, [("MSS", 1460)]))


def test_echo_requests_ie_pair_and_ordinary_ping() -> None:
    assert icmp_fields(echo(9, 0, bytes(120)))["network.probe_shape"] == "nmap_ie1"  # type: ignore[index]
    ie2 = icmp_fields(echo(0, 4, bytes(150)))
    assert ie2 is not None and ie2["network.probe_shape"] == "nmap_ie2"
    assert (ie2["icmp.id"], ie2["icmp.seq"], ie2["icmp.payload_length"]) == (7, 295, 150)
    ping = icmp_fields(echo(0, 0, bytes(range(56))))
    assert ping is not None and "network.probe_shape" not in ping


def test_benign_corpus_has_no_probe_shape() -> None:
    for path in (REPO / "tests" / "fixtures" / "pcap" / "benign_datacenter.pcap",
                 REPO / "rules" / "network" / "tcp_invalid_flags.tests" / "benign.pcap"):
        events = pcap_events(path, fixture_config(path))
        assert not [e for e in events if "network.probe_shape" in e.fields]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 255), st.integers(0, 65535))
def test_hostile_option_bytes_never_raise(opts: bytes, flags: int, window: int) -> None:
    opts = opts + bytes(-len(opts) % 4)
    frame = bytearray(bytes(Ether() / IP(src="198.18.0.20", dst="198.18.0.10")
                            / TCP(sport=1, dport=2, flags=flags, window=window)))
    frame[46] = ((20 + len(opts)) // 4) << 4
    frame[54:54] = opts
    for end in (len(frame), 54 + len(opts) // 2, 40):
        pkt = Packet(0.0, 4, SRC, DST, 6, 1, 2, flags, bytes(frame[:end]), 54 + len(opts),
                     end, end, None)
        f = tcp_fields(pkt)
        assert len(f.get("tcp.options", "").split(",")) <= 41
