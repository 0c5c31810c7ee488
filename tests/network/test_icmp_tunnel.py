"""The ICMP tunnel rule on the real ptunnel-ng capture (tests/fixtures/pcap/tools): which rule
fires, on which address, with which ATT&CK technique — beyond what expect.yml can say."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.offline.clock import run
from agent.offline.pcap import pcap_events

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "network"
NAMES = {doc["id"]: doc["name"] for path in RULES.glob("*.yml")
         for doc in yaml.safe_load_all(path.read_text())}


def test_real_ptunnel_download_alerts_once_on_the_client() -> None:
    """ptunnel-ng proxy on 198.18.0.10, client 198.18.0.20 fetching 2 MB: the data rides in
    the echo replies toward the client. The shape rule names the client, who asked for every
    reply (the party that acted); the volume rule, a flow-level byte count, names the proxy
    as the sender of the bytes."""
    report = load_rules([RULES])
    assert not report.errors
    pcap = REPO / "tests" / "fixtures" / "pcap" / "tools" / "icmp_tunnel_ptunnel.pcap"
    result = run(Engine(report.ruleset), pcap_events(pcap, Config()), horizon(report, 5.0))
    alerts = list(result.alerts.values())
    assert sorted((NAMES[a.rule.id], a.rule.level, a.group) for a in alerts) == [
        ("icmp_tunnel_shape", "medium",
         {"source.ip": "198.18.0.20", "destination.ip": "198.18.0.10"}),
        ("icmp_tunnel_volume", "medium",
         {"source.ip": "198.18.0.10", "destination.ip": "198.18.0.20"})]
    assert all("attack.t1095" in a.rule.tags for a in alerts)
