"""The TCP sessions analyzer (agent/netevents/analyzers/tcp_sessions.py): held-open connections
per (client, service) and per service, from the real slowloris capture and crafted traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.utils import wrpcap

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netdecode.pcapfile import CaptureReader
from agent.netevents.analyzers import tcp_sessions
from agent.netevents.processor import PacketProcessor
from tests.network.craft import SERVER, T0, handshake, tcp
from tests.network.make_session_fixtures import held

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


def test_many_clients_each_under_the_floor_make_one_service_report() -> None:
    events, _ = _replay(FIXTURES / "slow_service.pcap")
    reports = _sessions(events)
    assert reports
    assert {f["event.action"] for f in reports} == {"service_sessions"}
    assert max(f["sessions.slow"] for f in reports) == 1200
    assert max(f["sessions.clients"] for f in reports) == 40
    assert all("source.ip" not in f for f in reports)


def test_proxy_pool_health_checks_and_backup_stay_under_every_threshold() -> None:
    reports = _sessions(_replay(FIXTURES / "benign.pcap")[0])
    # The proxy's 100 pooled connections are reported (over the 50 floor), under the rule's 200.
    assert {(f["source.ip"], f["sessions.open"]) for f in reports} == {("10.1.0.30", 100)}
    assert all(f["event.action"] == "client_sessions" for f in reports)


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
