"""The TCP sessions analyzer (agent/netevents/analyzers/tcp_sessions.py): held-open connections
per (client, service) and per service, from the real slowloris capture and crafted traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.utils import wrpcap

from agent.config import Config, NetworkSection
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netdecode.pcapfile import CaptureReader
from agent.netevents.analyzers import tcp_sessions
from agent.netevents.processor import PacketProcessor
from agent.offline.clock import run
from agent.offline.pcap import pcap_events
from tests.network.craft import SERVER, T0, handshake, tcp
from tests.network.make_session_fixtures import held, keep_alive_office

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "rules" / "network" / "slow_connections.tests"
"""Made by tests/network/make_session_fixtures.py."""
SLOWLORIS = REPO / "tests" / "fixtures" / "pcap" / "tools" / "slowloris_400.pcap"


def _sessions(events: list[Event]) -> list[dict[str, Any]]:
    return [e.fields for e in events if e.logsource.category == "network_sessions"]


def _replay(path: Path, bulk: bool = True, batch: int = 4096) -> tuple[list[Event],
                                                                      PacketProcessor]:
    proc = PacketProcessor(NetworkSection())
    out: list[Event] = []
    with CaptureReader(path) as reader:
        for frames in reader.batches(batch):
            out += proc.process_columns(PacketColumns.from_frames(frames), "eth0", bulk=bulk)
    out += proc.flush()
    return out, proc


def _run(packets: list[Any]) -> tuple[list[Event], PacketProcessor]:
    proc = PacketProcessor(NetworkSection())
    ordered = sorted(packets, key=lambda p: float(p.time))
    out = proc.process([(float(p.time), 1, bytes(p), len(bytes(p))) for p in ordered])
    out += proc.flush()
    return out, proc


def test_real_slowloris_capture_is_400_slow_connections_held_by_the_client() -> None:
    events, _ = _replay(SLOWLORIS)
    reports = _sessions(events)
    assert reports, "no network_sessions event"
    top = max(reports, key=lambda f: f["sessions.slow"])
    assert top["event.action"] == "client_sessions"
    assert top["source.ip"] == "198.18.0.20"  # the client that held them, not the server
    assert top["destination.ip"] == "198.18.0.10"
    assert top["destination.port"] == 8080
    assert top["sessions.open"] >= 390
    assert top["sessions.slow"] == top["sessions.open"]
    assert top["sessions.bytes_per_second"] < 1024 * top["sessions.open"]


def test_bulk_path_reports_what_the_per_packet_path_reports() -> None:
    fast, _ = _replay(SLOWLORIS, bulk=True, batch=512)
    slow, _ = _replay(SLOWLORIS, bulk=False, batch=512)
    assert _sessions(fast) == _sessions(slow)
    assert [e.timestamp for e in fast if e.logsource.category == "network_sessions"] == \
        [e.timestamp for e in slow if e.logsource.category == "network_sessions"]


def test_few_clients_each_under_the_client_rule_make_one_service_report() -> None:
    """5 clients x 199 slow connections: each under slowloris_client's 200, the service's 995
    over slow_connections_service's 400 (the old 1000-from-10-clients floor missed it)."""
    events, _ = _replay(FIXTURES / "slow_service.pcap")
    reports = _sessions(events)
    service = [f for f in reports if f["event.action"] == "service_sessions"]
    assert service
    assert all("source.ip" not in f for f in service)
    assert max(f["sessions.slow"] for f in service) == 995
    assert max(f["sessions.clients"] for f in service) == 5
    clients = [f for f in reports if f["event.action"] == "client_sessions"]
    assert max(f["sessions.slow"] for f in clients) == 199


def test_proxy_pool_health_checks_backup_and_office_stay_under_every_threshold() -> None:
    reports = _sessions(_replay(FIXTURES / "benign.pcap")[0])
    # The proxy's 100 pooled connections and the office's 250 are held (over the 50 floor),
    # but answered and asking again, or answered and idle: none is slow.
    most: dict[str, int] = {}
    for f in reports:
        most[f["source.ip"]] = max(most.get(f["source.ip"], 0), f["sessions.open"])
    assert most == {"10.1.0.30": 100, "10.1.0.50": 250}
    assert all(f["event.action"] == "client_sessions" for f in reports)
    assert {f["sessions.slow"] for f in reports} == {0}


def test_answered_idle_keep_alive_connections_are_not_slow() -> None:
    """A NAT'd office's 250 keep-alive connections, each with two requests answered and then
    idle for a minute (under 1 KB/s, held): held, never slow."""
    events, _ = _run(keep_alive_office("10.1.0.50", SERVER, 250, T0))
    reports = _sessions(events)
    assert max(f["sessions.open"] for f in reports) == 250
    assert max(f["sessions.bytes_per_second"] for f in reports) < 1024 * 250
    assert {f["sessions.slow"] for f in reports} == {0}


def test_slowloris_above_one_kilobyte_per_second_is_still_slow() -> None:
    """250 connections each dribbling 1.5 KB of headers a second, never answered: over the
    1 KB/s of the trickling test, under the stall's 8 KB/s."""
    events, _ = _replay(FIXTURES / "slowloris_fast.pcap")
    top = max(_sessions(events), key=lambda f: f["sessions.slow"])
    assert top["source.ip"] == "198.51.100.8"
    assert top["sessions.slow"] == top["sessions.open"] == 250
    assert top["sessions.bytes_per_second"] > 1024 * 250


def test_a_stall_after_an_answered_request_is_slow() -> None:
    """One request answered first, then headers every 4 s never answered: stalled again."""
    client = "198.51.100.9"
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 100
    pkts: list[Any] = []
    for i in range(220):
        t, sport = T0 + i * 0.003, 31000 + i
        pkts += [tcp(t, client, SERVER, sport, 80, "S"), tcp(t + 0.001, SERVER, client, 80,
                                                             sport, "SA"),
                 tcp(t + 0.002, client, SERVER, sport, 80, "A"),
                 tcp(t + 0.01, client, SERVER, sport, 80, "PA", request),
                 tcp(t + 0.012, SERVER, client, 80, sport, "PA", answer)]
        for r in range(5):
            pkts += [tcp(t + 2 + r * 4, client, SERVER, sport, 80, "PA", b"X-b: c\r\n"),
                     tcp(t + 2.001 + r * 4, SERVER, client, 80, sport, "A")]
    events, _ = _run(pkts)
    assert max(f["sessions.slow"] for f in _sessions(events)) == 220


def test_slow_read_is_trickling() -> None:
    """The server answers in 200-byte segments every 2 s to a client that only acknowledges
    (a slow read with a small window): slow; the same with the client asking again is not."""
    def conns(client: str, again: bool) -> list[Any]:
        ask = b"GET /next HTTP/1.1\r\nHost: app\r\nAccept: */*\r\n\r\n"
        pkts: list[Any] = []
        for i in range(210):
            t, sport = T0 + i * 0.003, 32000 + i
            pkts += [tcp(t, client, SERVER, sport, 80, "S"),
                     tcp(t + 0.001, SERVER, client, 80, sport, "SA"),
                     tcp(t + 0.002, client, SERVER, sport, 80, "A"),
                     tcp(t + 0.01, client, SERVER, sport, 80, "PA", b"GET /big HTTP/1.1\r\n\r\n")]
            for r in range(8):
                pkts += [tcp(t + 1 + r * 2, SERVER, client, 80, sport, "PA", b"d" * 200),
                         tcp(t + 1.001 + r * 2, client, SERVER, sport, 80, "PA" if again else "A",
                             ask if again else b"")]
        return pkts
    slow_read = _sessions(_run(conns("198.51.100.11", False))[0])
    assert max(f["sessions.slow"] for f in slow_read) == 210
    pool = _sessions(_run(conns("198.51.100.12", True))[0])
    assert max(f["sessions.open"] for f in pool) == 210
    assert {f["sessions.slow"] for f in pool} == {0}


def test_health_check_connections_are_never_held() -> None:
    pkts = [p for i in range(600) for p in handshake(T0 + i * 0.1, "10.1.0.2", SERVER,
                                                      20000 + i, 80, data=1)]
    events, proc = _run(pkts)
    assert _sessions(events) == []
    assert proc.stats.table_overflows["tcp_sessions"] == 0


def test_reset_closes_and_idle_timeout_expires() -> None:
    client = "198.51.100.7"
    pkts = []
    for i in range(60):
        pkts += held(client, SERVER, 30000 + i, 80, T0, 4.0, 3, b"X: y\r\n")[:-3]  # no FIN
    for i in range(30):  # half of them reset at 20 s
        pkts.append(tcp(T0 + 20, client, SERVER, 30000 + i, 80, "R"))
    tick = T0 + 25 + tcp_sessions.RESET_GRACE  # the reset ones are dropped after the grace
    pkts.append(tcp(tick, "10.1.0.99", SERVER, 1, 81, "S"))  # clock ticks on
    pkts.append(tcp(tick + 1, "10.1.0.99", SERVER, 3, 81, "S"))  # and the tick's second ends
    pkts.append(tcp(tick + tcp_sessions.IDLE_TIMEOUT, "10.1.0.99", SERVER, 2, 81, "S"))
    proc = PacketProcessor(NetworkSection())
    ordered = sorted(pkts, key=lambda p: float(p.time))
    frames = [(float(p.time), 1, bytes(p), len(bytes(p))) for p in ordered]
    out = proc.process(frames[:-3])
    assert [f["sessions.open"] for f in _sessions(out)][-1] == 60
    out = proc.process(frames[-3:-1])
    assert _sessions(out) == []  # 30 left: under the floor
    analyzer = next(a for a in proc.analyzers
                    if isinstance(a, tcp_sessions.TcpSessionsAnalyzer))
    assert len(analyzer.sessions) == 30
    proc.process(frames[-1:])
    proc.flush()
    assert len(analyzer.sessions) == 0  # idle past the timeout
    assert analyzer.clients == {}


def test_tables_are_bounded_and_evict_the_least_recently_active(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_sessions, "MAX_CONNECTIONS", 100)
    monkeypatch.setattr(tcp_sessions, "MAX_CLIENTS", 10)
    pkts = []
    for i in range(500):
        client = f"198.51.{i // 250}.{i % 250 + 1}"
        pkts += [tcp(T0 + i * 0.001, SERVER, client, 80, 40000 + i, "SA"),
                 tcp(T0 + i * 0.001 + 0.0005, client, SERVER, 40000 + i, 80, "A")]
    _, proc = _run(pkts)
    analyzer = next(a for a in proc.analyzers
                    if isinstance(a, tcp_sessions.TcpSessionsAnalyzer))
    assert len(analyzer.clients) <= 10
    assert len(analyzer.sessions) <= 100
    assert proc.stats.table_overflows["tcp_sessions"] == 490
    assert len(analyzer.index) == 2 * len(analyzer.sessions)


def _slowloris(client: str, start: float) -> list[Any]:
    pkts: list[Any] = []
    for i in range(250):  # over the rule's 200; no FIN within the capture
        pkts += held(client, SERVER, 30000 + i, 80, start + i * 0.002, 4.0, 4, b"X: y\r\n")[:-3]
    return pkts


@pytest.mark.parametrize("bulk", [True, False])
def test_forged_syn_acks_neither_evict_a_slowloris_nor_name_a_client(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bulk: bool) -> None:
    """A flood of forged SYN-ACKs (or backscatter) to addresses that never answer them: the
    slowloris held before it is still reported, and no address it names becomes a client."""
    monkeypatch.setattr(tcp_sessions, "MAX_CONNECTIONS", 1000)
    monkeypatch.setattr(tcp_sessions, "MAX_PENDING", 500)
    pkts = _slowloris("198.51.100.7", T0)
    innocent = "198.51.100.99"
    for i in range(5000):  # forged from the server to one silent address, all ports
        pkts.append(tcp(T0 + 6 + i * 0.0005, SERVER, innocent, 80, 1024 + i, "SA"))
        if i % 20 == 0:  # and now and then another forged segment on the same connection
            pkts.append(tcp(T0 + 12 + i * 0.0005, SERVER, innocent, 80, 1024 + i, "A"))
    path = tmp_path / "forged.pcap"
    wrpcap(str(path), sorted(pkts, key=lambda p: float(p.time)))
    out, proc = _replay(path, bulk=bulk)
    reports = [f for f in _sessions(out) if f["event.action"] == "client_sessions"]
    assert {f["source.ip"] for f in reports} == {"198.51.100.7"}
    assert max(f["sessions.slow"] for f in reports) == 250
    assert proc.stats.table_overflows["tcp_sessions"] == 0
    assert proc.stats.table_overflows["tcp_sessions_pending"] > 0


@pytest.mark.parametrize("bulk", [True, False])
def test_a_forged_rst_per_connection_does_not_hide_a_slowloris(tmp_path: Path,
                                                                bulk: bool) -> None:
    """The server ignores an RST outside its window and the header lines go on: still held."""
    client = "198.51.100.7"
    pkts: list[Any] = []
    for i in range(250):
        conn = held(client, SERVER, 30000 + i, 80, T0 + i * 0.002, 4.0, 10, b"X: y\r\n")[:-3]
        pkts += conn
        pkts.append(tcp(T0 + 9 + i * 0.002, client, SERVER, 30000 + i, 80, "R"))
    path = tmp_path / "rst.pcap"
    wrpcap(str(path), sorted(pkts, key=lambda p: float(p.time)))
    events, _ = _replay(path, bulk=bulk)
    late = [f for e, f in zip([e for e in events if e.logsource.category == "network_sessions"],
                              _sessions(events), strict=True) if e.timestamp >= T0 + 20]
    assert late, "no report after the RSTs"
    assert max(f["sessions.slow"] for f in late) == 250
    assert {f["source.ip"] for f in late if f["event.action"] == "client_sessions"} == {client}


def _alerts(pcap: Path) -> list[tuple[str, dict[str, str]]]:
    report = load_rules([REPO / "rules" / "network"])
    assert not report.errors
    result = run(Engine(report.ruleset), pcap_events(pcap, Config()), horizon(report, 5.0))
    names = {doc["id"]: doc["name"] for path in (REPO / "rules" / "network").glob("*.yml")
             for doc in yaml.safe_load_all(path.read_text())}
    return sorted((names[a.rule.id], a.group) for a in result.alerts.values())


def test_a_syn_flood_diluted_with_junk_acks_is_caught_by_its_half_open_connections() -> None:
    """400 SYNs/s answered with SYN-ACKs nobody completes, two junk ACKs per SYN (SYN ratio
    0.33): no SYN-ratio rule fires; the half-open count does, naming the service."""
    flood = REPO / "rules" / "network" / "syn_flood_half_open.tests" / "attack.pcap"
    assert _alerts(flood) == [("syn_flood_half_open",
                               {"destination.ip": "10.1.0.10", "destination.port": 80})]
    reports = [f for f in _sessions(_replay(flood)[0])
               if f["event.action"] == "service_half_open"]
    assert sum(f["sessions.half_open"] for f in reports) == 4000


def test_complete_connections_are_never_half_open() -> None:
    benign = REPO / "rules" / "network" / "syn_flood_half_open.tests" / "benign.pcap"
    assert [f for f in _sessions(_replay(benign)[0])
            if f["event.action"] == "service_half_open"] == []
