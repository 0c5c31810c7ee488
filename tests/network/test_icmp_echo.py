"""The ICMP echo analyzer (agent/netevents/analyzers/icmp_echo.py): echo payloads shaped like a
tunnel, per requester → responder pair over 10 minutes, attributed to the requester."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.utils import wrpcap

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netdecode.pcapfile import CaptureReader
from agent.netevents.analyzers import icmp_echo
from agent.netevents.processor import PacketProcessor
from tests.network.make_icmp_echo_fixtures import OUT, _echo

PTUNNEL = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pcap" / "tools"


def _replay(path: Path, bulk: bool = True) -> tuple[list[Event], PacketProcessor]:
    proc = PacketProcessor(NetworkSection())
    out: list[Event] = []
    with CaptureReader(path) as reader:
        for frames in reader.batches(4096):
            out += proc.process_columns(PacketColumns.from_frames(frames), "eth0", bulk=bulk)
    out += proc.flush()
    return out, proc


def _echoes(events: list[Event]) -> list[tuple[float, dict[str, Any]]]:
    return [(e.timestamp, e.fields) for e in events
            if e.logsource.category == "network_icmp_echo"]


@pytest.mark.parametrize("bulk", [True, False])
def test_slow_download_names_the_client(bulk: bool) -> None:
    """~650 B/s in replies of many sizes: far under the volume rule, named on the requester."""
    found = _echoes(_replay(OUT / "slow_download.pcap", bulk)[0])
    assert len(found) == 1
    fields = found[0][1]
    assert (fields["source.ip"], fields["destination.ip"]) == ("198.18.0.20", "198.18.0.10")
    assert fields["icmp_echo.sizes"] >= icmp_echo.MIN_SIZES
    assert fields["icmp_echo.reply_bytes"] > fields["icmp_echo.request_bytes"]


@pytest.mark.parametrize("bulk", [True, False])
def test_real_ptunnel_download_names_the_client_on_both_paths(bulk: bool) -> None:
    """The proxy sends the 2 MB, but in answer to the client's requests: the client acted."""
    found = _echoes(_replay(PTUNNEL / "icmp_tunnel_ptunnel.pcap", bulk)[0])
    assert [(f["source.ip"], f["destination.ip"]) for _, f in found] == [
        ("198.18.0.20", "198.18.0.10")]
    other = _echoes(_replay(PTUNNEL / "icmp_tunnel_ptunnel.pcap", not bulk)[0])
    assert other == found


def test_pings_mtu_checks_and_a_lossy_large_ping_stay_silent() -> None:
    assert _echoes(_replay(OUT / "benign.pcap")[0]) == []


def test_forged_replies_alone_name_no_one(tmp_path: Path) -> None:
    """Replies of many sizes to an address that never asked: no requester, no event."""
    t0 = 1_700_000_000.0
    pkts = [_echo(t0 + i * 0.5, "198.18.0.10", "198.18.0.99", True, 3, i, b"x" * (300 + i))
            for i in range(600)]
    path = tmp_path / "forged.pcap"
    wrpcap(str(path), pkts)
    assert _echoes(_replay(path)[0]) == []


def test_pairs_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(icmp_echo, "MAX_PAIRS", 50)
    t0 = 1_700_000_000.0
    pkts = [_echo(t0 + i * 0.01, f"198.18.{i // 200}.{i % 200 + 1}", "198.18.9.9", False, 1, i,
                  b"p" * 56) for i in range(400)]
    path = tmp_path / "many.pcap"
    wrpcap(str(path), pkts)
    _, proc = _replay(path)
    analyzer = next(a for a in proc.analyzers if isinstance(a, icmp_echo.IcmpEchoAnalyzer))
    assert len(analyzer.pairs) == 50
    assert proc.stats.table_overflows["icmp_echo_pairs"] == 350
