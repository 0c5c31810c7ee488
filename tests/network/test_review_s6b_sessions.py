"""Adversarial review (s6b) of the slow-connection detection (agent/netevents/analyzers/
tcp_sessions.py + held_session.py, rules/network/slow_connections.yml): real workloads.

Each xfail(strict=True) test reproduces an unfixed problem: it asserts what *should* happen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.offline.clock import run
from agent.offline.pcap import pcap_events
from tests.network.toolrun import NAMES

REPO = Path(__file__).resolve().parents[2]
T0 = 1767225600.0
SERVER = "198.18.0.10"
PROXY = "198.18.0.30"  # a Go reverse proxy / service-mesh sidecar in front of SERVER
CONNECTIONS = 220


def _seg(ts: float, src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int,
         payload: bytes = b"") -> Packet:
    pkt = (Ether(src="02:00:5e:00:53:30", dst="02:00:5e:00:53:10") if src != SERVER else
           Ether(src="02:00:5e:00:53:10", dst="02:00:5e:00:53:30"))
    pkt = pkt / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                                           ack=ack, options=[("NOP", None), ("NOP", None),
                                                             ("Timestamp", (1, 1))])
    if payload:
        pkt = pkt / payload
    pkt.time = ts
    return pkt


def _alerts(tmp_path: Path, pkts: list[Packet]) -> list[tuple[str, dict[str, Any]]]:
    path = tmp_path / "t.pcap"
    wrpcap(str(path), sorted(pkts, key=lambda p: float(p.time)))
    report = load_rules([REPO / "rules" / "network"])
    assert not report.errors
    result = run(Engine(report.ruleset), pcap_events(path, Config()), horizon(report, 5.0))
    return [(NAMES[a.rule.id], dict(a.group)) for a in result.alerts.values()]


def _idle_pool(probe_every: float | None, probe: bytes = b"", answer_probe: bytes = b""
               ) -> list[Packet]:
    """CONNECTIONS keep-alive connections from PROXY: one request, answered; then idle for
    60 s. ``probe_every``: the client sends a segment (``probe``: b"" is a TCP keep-alive probe,
    seq - 1) every that many seconds, the server answers with ``answer_probe`` (b"": an ACK)."""
    request = b"GET /api/item HTTP/1.1\r\nHost: backend\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + b"x" * 300
    pkts: list[Packet] = []
    for i in range(CONNECTIONS):
        t, sp, c, s = T0 + i * 0.01, 40000 + i, 1000, 9000
        pkts += [_seg(t, PROXY, SERVER, sp, 8080, "S", c, 0),
                 _seg(t + 0.001, SERVER, PROXY, 8080, sp, "SA", s, c + 1),
                 _seg(t + 0.002, PROXY, SERVER, sp, 8080, "A", c + 1, s + 1),
                 _seg(t + 0.003, PROXY, SERVER, sp, 8080, "PA", c + 1, s + 1, request)]
        c += len(request)
        pkts += [_seg(t + 0.005, SERVER, PROXY, 8080, sp, "PA", s + 1, c + 1, answer)]
        s += len(answer)
        pkts += [_seg(t + 0.006, PROXY, SERVER, sp, 8080, "A", c + 1, s + 1)]
        if probe_every is not None:
            k = 1
            while k * probe_every < 60:
                pt = t + 0.006 + k * probe_every
                if probe:
                    pkts.append(_seg(pt, PROXY, SERVER, sp, 8080, "PA", c + 1, s + 1, probe))
                    c += len(probe)
                else:
                    pkts.append(_seg(pt, PROXY, SERVER, sp, 8080, "A", c, s + 1))
                if answer_probe:
                    pkts.append(_seg(pt + 0.001, SERVER, PROXY, 8080, sp, "PA", s + 1, c + 1,
                                     answer_probe))
                    s += len(answer_probe)
                else:
                    pkts.append(_seg(pt + 0.001, SERVER, PROXY, 8080, sp, "A", s + 1, c + 1))
                k += 1
    return pkts


def test_control_an_idle_pool_without_keepalive_probes_is_silent(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, _idle_pool(None))
    assert not [a for a in alerts if a[0] in ("slowloris_client", "slow_connections_service")]


@pytest.mark.xfail(strict=True, reason="false positive (high): Go's net.Dialer sends a TCP "
                   "keep-alive probe every 15 s on every connection by default (Traefik, Caddy, "
                   "Envoy-less meshes, any Go client pool); held_session counts any client "
                   "segment (pure ACKs too) after the last answer as the client 'dribbling', "
                   "so 220 answered, idle keep-alive connections from one proxy are "
                   "'stalled' -> slowloris_client")
def test_go_tcp_keepalive_probes_on_an_idle_pool_are_not_slowloris(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, _idle_pool(15.0))
    assert not [a for a in alerts if a[0] == "slowloris_client"], alerts


@pytest.mark.xfail(strict=True, reason="false positive (high): 220 plaintext HTTP/2 (h2c) gRPC "
                   "watch streams from one sidecar, idle, client keepalive PING every 10 s and "
                   "the server's 17-byte PING ACK: the ACK is under PAYLOAD_MARGIN so it is not "
                   "an 'answer' and every stream is 'stalled' -> slowloris_client")
def test_grpc_watch_streams_with_keepalive_pings_are_not_slowloris(tmp_path: Path) -> None:
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8
    pong = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + b"\x00" * 8
    alerts = _alerts(tmp_path, _idle_pool(10.0, ping, pong))
    assert not [a for a in alerts if a[0] == "slowloris_client"], alerts


def _slowloris(interval: float, seconds: float, count: int = 400) -> list[Packet]:
    """``count`` connections from one client, each sending a partial request, then one more
    header line every ``interval`` seconds (slowloris / slowhttptest -i), never answered."""
    attacker = "198.18.0.66"
    pkts: list[Packet] = []
    for i in range(count):
        t, sp, c, s = T0 + i * 0.005, 30000 + i, 1000, 9000
        head = b"GET /?%d HTTP/1.1\r\nHost: target\r\nUser-Agent: Mozilla/5.0\r\n" % i
        pkts += [_seg(t, attacker, SERVER, sp, 8080, "S", c, 0),
                 _seg(t + 0.001, SERVER, attacker, 8080, sp, "SA", s, c + 1),
                 _seg(t + 0.002, attacker, SERVER, sp, 8080, "A", c + 1, s + 1),
                 _seg(t + 0.003, attacker, SERVER, sp, 8080, "PA", c + 1, s + 1, head)]
        c += len(head)
        pkts.append(_seg(t + 0.004, SERVER, attacker, 8080, sp, "A", s + 1, c + 1))
        k = 1
        while k * interval < seconds:
            line = b"X-a: %d\r\n" % k
            pt = t + 0.003 + k * interval
            pkts.append(_seg(pt, attacker, SERVER, sp, 8080, "PA", c + 1, s + 1, line))
            c += len(line)
            pkts.append(_seg(pt + 0.001, SERVER, attacker, 8080, sp, "A", s + 1, c + 1))
            k += 1
    return pkts


def test_control_slowloris_every_10_s_is_caught(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, _slowloris(10.0, 45.0))
    assert any(name == "slowloris_client" for name, _ in alerts), alerts


@pytest.mark.xfail(strict=True, reason="evasion: STALL_MAX_GAP = 20 s, but Apache's default "
                   "Timeout (60 s) and nginx's client_header_timeout (60 s) keep a connection "
                   "that gets one header line every 30 s: slowloris / slowhttptest with a 30 s "
                   "interval holding 400 connections is never 'stalled' -> no alert")
def test_slowloris_every_30_s_is_caught(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, _slowloris(30.0, 100.0))
    assert any(name == "slowloris_client" for name, _ in alerts), alerts
