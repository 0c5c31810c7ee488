"""The bulk (columnar) path produces exactly what the per-packet path produces.

``PacketProcessor.process_columns(cols, bulk=False)`` sends every packet through the per-packet
code; with ``bulk=True`` ordinary segments and count-only flood packets are counted with numpy.
Random mixes of every packet kind — floods past their budgets, tiny tables that overflow,
timestamps that jump and go backwards — must give the same events and the same counters.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import Frame, PacketColumns, chain_offsets
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader
from agent.netevents import bulk
from agent.netevents.analyzers.service_probes import ServiceProbeAnalyzer
from agent.netevents.analyzers.tcp_sessions import TcpSessionsAnalyzer
from agent.netevents.processor import PacketProcessor

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SERVERS = ["10.1.0.10", "10.1.0.11"]
CLIENTS = [f"10.1.0.{20 + i}" for i in range(6)] + ["203.0.113.66", "198.51.100.7"]


def _framed(message: DNS) -> bytes:
    """A DNS message as it travels over TCP: its 2-byte length first (RFC 7766)."""
    body = bytes(message)
    return len(body).to_bytes(2, "big") + body


def _templates() -> dict[str, bytes]:
    ip = IP(src="10.1.0.20", dst="10.1.0.10")
    return {
        "syn": bytes(ETH / ip / TCP(sport=40000, dport=80, flags="S")),
        "synack": bytes(ETH / ip / TCP(sport=80, dport=40000, flags="SA")),
        "rst": bytes(ETH / ip / TCP(sport=80, dport=40000, flags="RA")),
        "fin": bytes(ETH / ip / TCP(sport=40000, dport=81, flags="F")),
        "ack": bytes(ETH / ip / TCP(sport=40000, dport=443, flags="A")),
        "data": bytes(ETH / ip / TCP(sport=40000, dport=443, flags="PA") / (b"x" * 300)),
        "udp": bytes(ETH / ip / UDP(sport=5000, dport=9999) / b"payload"),
        "dns": bytes(ETH / ip / UDP(sport=40000, dport=53)
                     / DNS(rd=1, qd=DNSQR(qname="www.example.com"))),
        "dns_answer": bytes(ETH / ip / UDP(sport=53, dport=40000)
                            / DNS(qr=1, qd=DNSQR(qname="a.example.org"))),
        "dns_nx": bytes(ETH / IP(src="10.1.0.10", dst="10.1.0.20") / UDP(sport=53, dport=40000)
                        / DNS(qr=1, rcode=3, qd=DNSQR(qname="q1x.example.net"))),
        "dns_tcp": bytes(ETH / ip / TCP(sport=40000, dport=53, flags="PA")
                         / _framed(DNS(rd=1, qd=DNSQR(qname="zone.example.org", qtype="AXFR")))),
        "dns_tcp_answer": bytes(ETH / IP(src="10.1.0.10", dst="10.1.0.20")
                                / TCP(sport=53, dport=40000, flags="PA")
                                / _framed(DNS(qr=1, rcode=5, qd=DNSQR(qname="zone.example.org",
                                                                      qtype="AXFR")))),
        "dns_tcp_more": bytes(ETH / IP(src="10.1.0.10", dst="10.1.0.20")
                              / TCP(sport=53, dport=40000, flags="A") / bytes(range(120))),
        "echo": bytes(ETH / ip / ICMP(type=8)),
        "echo_reply": bytes(ETH / ip / ICMP(type=0)),
        "unreachable": bytes(ETH / ip / ICMP(type=3, code=3)
                             / IPerror(src="10.1.0.10", dst="10.1.0.20") / UDPerror(dport=7)),
        "arp": bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="10.1.0.1", pdst="10.1.0.10")),
        "ipv6": bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(flags="S")),
        "vlan": bytes(ETH / Dot1Q(vlan=5) / ip / TCP(flags="A")),
        "options": bytes(ETH / IP(src="10.1.0.20", dst="10.1.0.10", options=b"\x01\x01\x01\x01")
                         / TCP(flags="A")),
        "fragment": bytes(ETH / IP(src="10.1.0.20", dst="10.1.0.10", frag=10) / (b"y" * 20)),
        "short_total": bytes(ETH / IP(src="10.1.0.20", dst="10.1.0.10", len=12) / UDP()),
    }


TEMPLATES = _templates()
# Kind → weight: floods (SYN, DNS, ICMP, UDP) dominate, like the traffic the bulk path is for.
WEIGHTS = {"syn": 30, "ack": 15, "data": 15, "dns": 10, "echo": 8, "udp": 8, "synack": 2,
           "rst": 2, "fin": 1, "dns_answer": 2, "dns_nx": 5, "echo_reply": 1, "unreachable": 1,
           "dns_tcp": 2, "dns_tcp_answer": 1, "dns_tcp_more": 3,
           "arp": 1, "ipv6": 1, "vlan": 1, "options": 1, "fragment": 1, "short_total": 1, "cut": 1}


def _ip(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def mixed(rng: random.Random, count: int, spoofed: float = 0.3) -> list[Frame]:
    """``count`` frames of random kinds, addresses from small pools (so groups form)."""
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=count)
    ts = 1_767_225_600.0 + rng.random()
    out: list[Frame] = []
    for kind in kinds:
        ts += rng.choice((0.0, 0.0001, 0.0003, 0.001))
        if rng.random() < 0.002:
            ts += rng.choice((1.0, 2.5, -0.7, -1.5))  # jumps, and time going backwards
        if kind == "cut":
            frame = bytearray(TEMPLATES[rng.choice(("syn", "dns", "dns_nx", "dns_tcp", "echo"))])
            frame = frame[:rng.randint(0, len(frame) - 1)]
        else:
            frame = bytearray(TEMPLATES[kind])
        if kind in ("syn", "ack", "data", "dns", "echo", "udp", "synack", "rst", "fin",
                    "dns_answer", "dns_nx", "dns_tcp", "dns_tcp_answer", "dns_tcp_more",
                    "echo_reply", "unreachable") and len(frame) >= 38:
            src = (rng.getrandbits(32).to_bytes(4, "big")
                   if kind == "syn" and rng.random() < spoofed else _ip(rng.choice(CLIENTS)))
            frame[26:30] = src
            frame[30:34] = _ip(rng.choice(SERVERS))
            if kind in ("dns", "echo", "udp") and rng.random() < 0.6:
                frame[26:34] = _ip(CLIENTS[0]) + _ip(SERVERS[0])  # a DNS/ICMP/UDP flood
            if kind == "dns_nx" and rng.random() < 0.6:
                frame[26:34] = _ip(SERVERS[0]) + _ip(CLIENTS[0])  # NXDOMAIN answers to one client
            if kind in ("ack", "data"):
                frame[34:36] = rng.randint(40000, 40040).to_bytes(2, "big")
            if kind == "syn" and rng.random() < 0.2:
                frame[36:38] = rng.choice((22, 443)).to_bytes(2, "big")
            if kind == "echo" and rng.random() < 0.1:
                frame[34] = 13  # timestamp request: another ICMP budget key
        out.append((ts, 1, bytes(frame), len(frame) + rng.choice((0, 0, 4))))
    return out


def _flat(events: list[Event]) -> list[tuple[float, str, dict[str, Any]]]:
    return [(e.timestamp, str(e.logsource.category), e.fields) for e in events]


def _stats(proc: PacketProcessor) -> dict[str, Any]:
    s = proc.stats
    return {"packets": s.packets, "bytes": s.bytes, "errors": dict(s.errors),
            "events": dict(s.events), "suppressed": s.suppressed,
            "over_global": s.over_global_budget, "overflows": dict(s.table_overflows),
            "traffic": dict(s.traffic), "tcp_control": dict(s.tcp_control),
            "dns_queries": s.dns_queries, "dns_responses": dict(s.dns_responses)}


def _tables(proc: PacketProcessor) -> dict[str, Any]:
    """The tables the paths must leave the same, in their order: the connection table, the
    service-probe analyzer's connections awaiting a first payload, the ``tcp_sessions``
    pending and tracked connections, the aggregates and flows."""
    state = proc.state
    sessions = next(a for a in proc.analyzers if isinstance(a, TcpSessionsAnalyzer))
    probes = next(a for a in proc.analyzers if isinstance(a, ServiceProbeAnalyzer))
    return {
        "connections": list(state.connections.items()),
        "awaiting_first_payload": list(probes.awaiting.items()),
        "pending": [(k, s.first, s.confirmed) for k, s in sessions.pending.items()],
        # (Their order, least recently active first, is not compared: the paths confirm a
        # second's connections in different orders — a known difference, not of this test.)
        "sessions": sorted((k, s.first, s.last, s.bytes, s.reset)
                           for k, s in sessions.sessions.items()),
        "index": sorted(sessions.index),
        "aggregates": [(k, a.packets, a.bytes, a.syn, a.synack, a.rst, a.echo, a.source_count())
                       for k, a in state.aggregates.items()],
        "flows": [(k, f.packets, f.bytes, f.first, f.last) for k, f in state.flows.items()],
    }


class CountingProcessor(PacketProcessor):
    per_packet = 0

    def _packet(self, *args: Any) -> None:  # type: ignore[override]
        self.per_packet += 1
        super()._packet(*args)


def both(frames: list[Frame], settings: NetworkSection, batch: int, check_tables: bool = True
         ) -> tuple[CountingProcessor, CountingProcessor, list[Event], list[Event]]:
    fast, slow = CountingProcessor(settings), CountingProcessor(settings)
    got: list[Event] = []
    want: list[Event] = []
    for i in range(0, len(frames), batch):
        cols = PacketColumns.from_frames(frames[i:i + batch])
        got += fast.process_columns(cols, "eth0")
        want += slow.process_columns(cols, "eth0", bulk=False)
        if check_tables:
            assert _tables(fast) == _tables(slow)
    return fast, slow, got + fast.flush(), want + slow.flush()


TIGHT = NetworkSection(
    max_events_per_destination=5, max_events_per_source=40, max_events_per_second=60,
    max_dns_events_per_client=4, max_new_flows_per_destination=8, max_tracked_keys=1024,
    max_flows=100, aggregate_min_packets=5, flow_interval_seconds=2.0,
)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("network", [NetworkSection(), TIGHT], ids=["defaults", "tight"])
def test_bulk_path_equals_per_packet_path(seed: int, network: NetworkSection) -> None:
    frames = mixed(random.Random(seed), 12000)
    fast, slow, got, want = both(frames, network, batch=3000)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    assert slow.per_packet == len(frames)
    # Ordinary segments always go in bulk; with tight budgets the floods from sources without
    # a flow do too.
    assert fast.per_packet < (0.6 if network is TIGHT else 0.8) * len(frames)
    if network is TIGHT:
        assert fast.stats.over_global_budget
        assert fast.stats.table_overflows["flows_per_destination"]


def test_bulk_path_with_a_full_connection_table_falls_back_per_packet() -> None:
    """More new connections in one second than the table holds: the per-packet overflow path."""
    rng = random.Random(9)
    frames: list[Frame] = []
    template = bytearray(TEMPLATES["ack"])
    for i in range(3000):
        frame = bytearray(template)
        frame[26:30] = rng.getrandbits(32).to_bytes(4, "big")
        frames.append((1000.0 + i * 1e-4, 1, bytes(frame), len(frame)))
    fast, slow, got, want = both(frames, TIGHT, batch=1000)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    assert fast.per_packet > 1000  # the batch that overflowed went packet by packet


def test_syn_flood_from_one_source_with_a_flow_keeps_updating_it() -> None:
    """SYNs from a source that already has a flow are not skipped (the flow's last-seen time)."""
    frames: list[Frame] = []
    syn = bytearray(TEMPLATES["syn"])
    for i in range(2000):
        frame = bytearray(syn)
        frame[26:30] = (_ip("10.1.0.20") if i % 3 == 0
                        else (0x0A000000 + i).to_bytes(4, "big"))
        frames.append((50.0 + i * 1e-4, 1, bytes(frame), len(frame)))
    fast, slow, got, want = both(frames, NetworkSection(max_new_flows_per_destination=10),
                                 batch=2000)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    assert fast.per_packet < 1200


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-5, max_value=50, allow_nan=False), min_size=1,
                max_size=60),
       st.sampled_from([float("-inf"), 0.0, 3.0, 10.0]))
def test_second_boundaries_follow_the_per_packet_rule(times: list[float], start: float) -> None:
    want = []
    following = start
    for i, ts in enumerate(times):
        if ts >= following:
            want.append(i)
            following = int(ts) + 1
    ranges = list(bulk.seconds(np.array(times), start))
    assert [a for a, _b, rolls in ranges if rolls] == want
    assert ranges[0][0] == 0 and ranges[-1][1] == len(times)
    assert all(b == c for (_a, b, _r), (c, _d, _s) in pairwise(ranges))


def test_groups_number_rows_by_first_appearance() -> None:
    rows = np.array([[5, 1], [2, 2], [5, 1], [7, 0], [2, 2], [5, 1]], dtype=np.uint32)
    first, inverse, counts = bulk.groups(rows)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1, 0]
    assert counts.tolist() == [3, 2, 1]


def test_groups_survive_a_hash_collision() -> None:
    """Two different rows with the same 32-bit hash still form two groups."""
    a, b = [83303058, 2020492805, 4096460549], [550723364, 2917707877, 2237981469]
    rows = np.array([a, b, a, [1, 2, 3], b], dtype=np.uint32)
    first, inverse, counts = bulk.groups(rows)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1]
    assert counts.tolist() == [2, 2, 1]


def test_chain_offsets_follow_lengths_and_stop_at_the_end() -> None:
    length = struct.Struct("<8xI")
    data = b"".join(struct.pack("<IIII", 0, 0, n, n) + b"z" * n for n in (3, 0, 10))
    assert chain_offsets(data, 0, 10, length, 16) == [0, 19, 35, 61]
    assert chain_offsets(data, 0, 1, length, 16) == [0, 19]


def _pcap(records: list[tuple[int, bytes]], tail: bytes = b"") -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (orig, frame) in enumerate(records):
        out.append(struct.pack("<IIII", 100 + i, 250000 * i, len(frame), orig) + frame)
    return b"".join(out) + tail


def _read(path: Path, how: Callable[[CaptureReader], Iterator[list[Frame]]]
          ) -> tuple[list[Frame], int, str | None]:
    """Frames handed out (also those before an error), truncated records, the error."""
    frames: list[Frame] = []
    error = None
    with CaptureReader(path) as reader:
        try:
            for batch in how(reader):
                frames.extend(batch)
        except CaptureFormatError as exc:
            error = str(exc)
        return frames, reader.truncated_records, error


def _by_batches(reader: CaptureReader) -> Iterator[list[Frame]]:
    return reader.batches(3)


def _by_columns(reader: CaptureReader) -> Iterator[list[Frame]]:
    return (cols.frames() for cols in reader.columns(3))


@pytest.mark.parametrize("tail", [b"", b"\x01\x02", struct.pack("<IIII", 1, 2, 500, 500) + b"ab",
                                  struct.pack("<IIII", 1, 2, 10_000_000, 5)])
def test_columns_reader_matches_the_frame_reader(tmp_path: Path, tail: bytes) -> None:
    records = [(len(TEMPLATES[k]) + 4, TEMPLATES[k]) for k in ("syn", "dns", "arp", "echo")] * 3
    records.append((60, b"\x00" * 10))
    path = tmp_path / "t.pcap"
    path.write_bytes(_pcap(records, tail))
    assert _read(path, _by_columns) == _read(path, _by_batches)
    frames, _, _ = _read(path, _by_columns)
    assert len(frames) == len(records)
    assert frames[1] == (101.25, 1, TEMPLATES["dns"], len(TEMPLATES["dns"]) + 4)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_columns_reader_on_garbage_matches_the_frame_reader(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("cols") / "g.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + data)
    assert _read(path, _by_columns) == _read(path, _by_batches)


def test_small_batches_go_packet_by_packet() -> None:
    frames = mixed(random.Random(8), bulk.BULK_MIN_PACKETS - 1)
    fast, slow, got, want = both(frames, NetworkSection(), batch=len(frames))
    assert fast.per_packet == slow.per_packet == len(frames)
    assert _flat(got) == _flat(want)


def test_from_frames_keeps_every_frame() -> None:
    frames = mixed(random.Random(4), 200)
    cols = PacketColumns.from_frames(frames)
    assert cols.frames() == frames
    assert cols.head.shape == (200, 48)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(WEIGHTS)), st.integers(0, 7), st.integers(0, 1),
                          st.sampled_from([0.0, 0.0, 0.0001, 0.02, 0.7, -0.3])),
                min_size=1, max_size=400),
       st.integers(1, 300))
def test_bulk_path_equals_per_packet_path_on_any_sequence(
    steps: list[tuple[str, int, int, float]], batch: int
) -> None:
    """Hypothesis picks the kinds, addresses, time steps and batch size."""
    frames: list[Frame] = []
    ts = 1000.0
    for kind, client, server, dt in steps:
        ts += dt
        frame = bytearray(TEMPLATES["syn" if kind == "cut" else kind])
        if kind == "cut":
            frame = frame[:30]
        elif len(frame) >= 38 and kind not in ("arp", "ipv6", "vlan", "options", "fragment"):
            frame[26:34] = _ip(CLIENTS[client]) + _ip(SERVERS[server])
        frames.append((ts, 1, bytes(frame), len(frame)))
    tight = NetworkSection(max_events_per_destination=2, max_events_per_source=3,
                           max_events_per_second=8, max_dns_events_per_client=1,
                           max_new_flows_per_destination=1, max_tracked_keys=1024)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "FLOOD_MIN_PACKETS", 2)  # watch every group, however small
        patch.setattr(bulk, "BULK_MIN_PACKETS", 1)  # and count every batch in bulk
        fast, slow, got, want = both(frames, tight, batch)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)


def test_new_flows_of_counted_segments_do_not_depend_on_the_path() -> None:
    """A known connection's segments counted in bulk and a new one's counted per packet, toward
    a destination that may start one more flow: the same one gets it (found by hypothesis)."""
    frames: list[Frame] = []
    ts = 1000.0
    for kind, client, server, dt in [("ack", 0, 0, -0.3), ("ack", 0, 0, 0.0), ("ack", 0, 1, 0.7),
                                     ("data", 1, 0, 0.0), ("ack", 0, 0, 0.0)]:
        ts += dt
        frame = bytearray(TEMPLATES[kind])
        frame[26:34] = _ip(CLIENTS[client]) + _ip(SERVERS[server])
        frames.append((ts, 1, bytes(frame), len(frame)))
    tight = NetworkSection(max_new_flows_per_destination=1, max_tracked_keys=1024)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "BULK_MIN_PACKETS", 1)
        fast, slow, got, want = both(frames, tight, 3)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)


def test_floods_toward_a_full_aggregate_table_count_its_overflows() -> None:
    """A scan fills the aggregate table; the SYN and UDP floods after it find no room."""
    rng = random.Random(12)
    frames: list[Frame] = []
    ts = 2000.0
    syn, udp = bytearray(TEMPLATES["syn"]), bytearray(TEMPLATES["udp"])
    for port in range(1, 1101):  # 1100 services probed: more than the 1024 table slots
        frame = bytearray(syn)
        frame[26:30] = _ip("203.0.113.66")
        frame[36:38] = port.to_bytes(2, "big")
        frames.append((ts, 1, bytes(frame), len(frame)))
        ts += 1e-5
    for i in range(600):
        frame = bytearray(syn if i % 2 else udp)
        frame[26:30] = rng.getrandbits(32).to_bytes(4, "big") if i % 2 else _ip(CLIENTS[0])
        frame[30:34] = _ip("10.1.0.99")
        if i % 2:
            frame[36:38] = (8080).to_bytes(2, "big")
        frames.append((ts, 1, bytes(frame), len(frame)))
        ts += 1e-5
    network = NetworkSection(max_events_per_destination=3, max_new_flows_per_destination=5,
                             max_tracked_keys=1024)
    fast, slow, got, want = both(frames, network, batch=len(frames))
    # 77 scan probes past the 1024 slots (one is the scanned host's all-ports aggregate), then
    # all 600 flood packets: one overflow each, and the 300 SYNs once more for their host's
    # all-ports aggregate (a SYN without room is not also counted as a SYN-ACK of its source's
    # service).
    assert slow.stats.table_overflows["aggregates"] == 77 + 600 + 300
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    assert fast.per_packet < len(frames) - 500


def handshakes(rng: random.Random, count: int, clients: int = 300) -> list[Frame]:
    """:func:`mixed` traffic with ``count`` connections to two busy services woven in (SYN,
    SYN-ACK — sometimes with ECE or PSH, sometimes sent twice, now and then with a TCP header
    or IP total length too short —, the handshake's ACK, data, then FIN or an RST from either
    side), and now and then a SYN toward a client."""
    frames = mixed(rng, count * 2)
    servers = [(_ip(SERVERS[0]), 443), (_ip(SERVERS[1]), 8080)]
    woven: list[list[bytes]] = [[] for _ in range(len(frames))]
    for i in range(count):
        client = bytes([10, 2, i % clients // 250, i % clients % 250 + 1])
        server, port = servers[rng.random() < 0.3]
        cport = 30000 + i % 30000
        at = rng.randrange(len(frames))
        conn = [("syn", client, server, cport, port, 0x02),
                ("synack", server, client, port, cport, rng.choice((0x12, 0x12, 0x52, 0x1A)))]
        if rng.random() < 0.05:
            conn.append(conn[-1])
        conn.append(("ack", client, server, cport, port, 0x10))
        if rng.random() < 0.5:
            conn.append(("data", client, server, cport, port, 0x18))
        end = rng.random()
        if end < 0.1:
            conn.append(("rst", server, client, port, cport, 0x04))
        elif end < 0.2:
            conn.append(("rst", client, server, cport, port, 0x14))
        else:
            conn.append(("ack", client, server, cport, port, 0x11))
        if rng.random() < 0.02:
            conn.append(("syn", _ip(CLIENTS[1]), client, 40000, 80, 0x02))
        for offset, (kind, src, dst, sport, dport, flags) in enumerate(conn):
            frame = bytearray(TEMPLATES[kind])
            frame[26:30], frame[30:34] = src, dst
            frame[34:38] = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
            frame[47] = flags
            if kind == "synack" and rng.random() < 0.01:  # malformed: an error per packet
                frame[46 if rng.random() < 0.5 else 17] = 0x40 if rng.random() < 0.5 else 12
            woven[min(len(frames) - 1, at + offset * rng.randint(0, 3))].append(bytes(frame))
    out: list[Frame] = []
    for frame_, extra in zip(frames, woven, strict=True):
        out.append(frame_)
        out.extend((frame_[0], 1, data, len(data)) for data in extra)
    return out


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("network", [NetworkSection(max_events_per_source=60), TIGHT],
                         ids=["source_budget", "tight"])
def test_refused_synacks_counted_in_bulk_leave_the_same_tables(
    seed: int, network: NetworkSection
) -> None:
    """A busy server answers more SYNs than its per-source event budget: its later SYN-ACKs of
    the second are counted in bulk, and the connection table, the ``tcp_sessions`` pending
    and tracked connections, aggregates, flows, events and counters are what the per-packet
    path leaves (checked after every batch)."""
    frames = handshakes(random.Random(seed), 6000)
    fast, slow, got, want = both(frames, network, batch=4000)
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    synacks = sum(1 for _ts, _l, data, _w in frames if len(data) > 47 and data[47] & 0x12 == 0x12)
    assert fast.per_packet < slow.per_packet - synacks // 2  # most SYN-ACKs went in bulk


NMAP_PROBES = (b"GET / HTTP/1.0\r\n\r\n", b"OPTIONS / HTTP/1.0\r\n\r\n", b"\r\n\r\n",
               b"HELP\r\n", b"\x16\x03\0\0S\x01\0\0O\x03\0?G\xd7\xf7\xba,\xee\xea\xb2`~\xf3")
BENIGN_FIRST = (b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.5.0\r\n\r\n",
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")


def _connections(rng: random.Random, count: int) -> tuple[list[Frame], int]:
    """``count`` interleaved TCP connections (handshake, first client payload, a reply, a
    second request, FIN) and how many have an nmap probe as their *first* client payload.
    Some start mid-stream (no SYN-ACK: not awaited); some send a probe only second."""
    timed: list[tuple[float, bytes]] = []
    first_probes = 0
    for i in range(count):
        client, server = _ip(rng.choice(CLIENTS)), _ip(rng.choice(SERVERS))
        cport, sport = 30000 + i, rng.choice((80, 8080, 25, 9999))
        ts = 1000.0 + rng.random() * 3.0
        mid_stream = rng.random() < 0.15
        probe_first = rng.random() < 0.5
        first = rng.choice(NMAP_PROBES if probe_first else BENIGN_FIRST)
        second = rng.choice(NMAP_PROBES + BENIGN_FIRST)
        first_probes += probe_first and not mid_stream
        c2s = IP(src=".".join(map(str, client)), dst=".".join(map(str, server)))
        s2c = IP(src=c2s.dst, dst=c2s.src)
        steps = [(s2c, TCP(sport=sport, dport=cport, flags="A"), b"x" * 40)] if mid_stream else [
            (c2s, TCP(sport=cport, dport=sport, flags="S"), b""),
            (s2c, TCP(sport=sport, dport=cport, flags="SA"), b""),
            (c2s, TCP(sport=cport, dport=sport, flags="A"), b"")]
        steps += [(c2s, TCP(sport=cport, dport=sport, flags="PA"), first),
                  (s2c, TCP(sport=sport, dport=cport, flags="PA"), b"HTTP/1.0 200 OK\r\n\r\n"),
                  (c2s, TCP(sport=cport, dport=sport, flags="PA"), second),
                  (c2s, TCP(sport=cport, dport=sport, flags="FA"), b"")]
        for ip, tcp, payload in steps:
            ts += rng.choice((0.0, 0.0002, 0.001, 0.05))
            timed.append((ts, bytes(ETH / ip / tcp / payload) if payload
                          else bytes(ETH / ip / tcp)))
    timed.sort(key=lambda t: t[0])
    return [(ts, 1, frame, len(frame)) for ts, frame in timed], first_probes


def _probes(events: list[Event]) -> list[str]:
    return [e.fields["network.service_probe"] for e in events
            if "network.service_probe" in e.fields]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("batch", [5, 64, 700])
def test_first_client_payloads_are_the_same_on_both_paths(seed: int, batch: int) -> None:
    """Each connection's first client payload reaches the service-probe analyzer whichever
    path counts its segments: the SYN-ACK in an earlier batch, or in the same batch."""
    frames, first_probes = _connections(random.Random(seed), 300)
    network = NetworkSection(max_events_per_destination=1000, max_events_per_source=1000,
                             max_events_per_second=5000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "BULK_MIN_PACKETS", 1)
        fast, slow, got, want = both(frames, network, batch)
    assert len(_probes(want)) == first_probes > 50
    assert _flat(got) == _flat(want)
    assert _stats(fast) == _stats(slow)
    assert fast.per_packet < slow.per_packet  # replies and later requests still go in bulk


def test_first_payload_equality_fails_without_the_bulk_hold() -> None:
    """The equality above can fail: counting awaited segments in bulk loses first payloads."""
    frames, _ = _connections(random.Random(3), 200)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "BULK_MIN_PACKETS", 1)
        patch.setattr(bulk, "awaiting_rows", lambda head, *_: np.zeros(len(head), dtype=bool))
        # (without the per-batch table check: it would stop at the first difference)
        _, _, got, want = both(frames, NetworkSection(), 700, check_tables=False)
    assert len(_probes(got)) < len(_probes(want))
