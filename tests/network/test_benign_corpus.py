"""A benign capture — twenty minutes of a busy but ordinary server — raises no alert of any rule.

``tests/fixtures/pcap/benign_mixed.pcap`` staggers every negative rule fixture over one
timeline (``python -m tests.network.make_rule_fixtures --benign-only`` regenerates it), so
look-alikes of different rules also meet each other: the same client browsing, using its
databases and SSH, monitoring pings, DNS browsing and a DNS server's load, backups to the LAN.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.offline.clock import run
from agent.offline.pcap import pcap_events

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "pcap" / "benign_mixed.pcap"


def test_benign_capture_raises_no_alert_of_any_shipped_rule() -> None:
    report = load_rules([REPO / "rules"])
    assert not report.errors
    engine = Engine(report.ruleset)
    result = run(engine, pcap_events(CORPUS, Config()), horizon(report, 5.0))
    assert result.events > 5000
    alerts = [(a.rule.title, a.group) for a in result.alerts.values()]
    assert alerts == []


DATACENTER = REPO / "tests" / "fixtures" / "pcap" / "benign_datacenter.pcap"


def test_datacenter_capture_raises_no_alert_of_any_shipped_rule() -> None:
    """A load balancer's health check every 0.2 s for 5 minutes (half closed with resets), 2,000
    lookups of 200 names in a minute, a 400 MB rsync over SSH to the LAN, monitoring pings to
    and from eight hosts, NTP client and server (``python -m tests.network.make_scan_fixtures``
    regenerates it)."""
    report = load_rules([REPO / "rules"])
    assert not report.errors
    engine = Engine(report.ruleset)
    result = run(engine, pcap_events(DATACENTER, Config()), horizon(report, 5.0))
    assert result.events > 5000
    alerts = [(a.rule.title, a.group) for a in result.alerts.values()]
    assert alerts == []
