"""The scan-variant rules on their crafted captures: timing and attribution beyond expect.yml.

``vedette rules test`` (tests/rules) already proves each rule fires on its attack capture and
stays silent on its benign one; this module checks what an expect file cannot say: *when* an
alert opens, that only the intended rule fires, and that it names the scanner as source with
ATT&CK T1046.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.alerts import Alert
from agent.attack import threat_fields
from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.offline.clock import run
from agent.offline.pcap import pcap_events
from tests.network.craft import ATTACKER, SERVER, T0

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "network"
NAMES = {doc["id"]: doc["name"] for path in RULES.glob("*.yml")
         for doc in yaml.safe_load_all(path.read_text())}


def _alerts(pcap: Path) -> list[Alert]:
    report = load_rules([RULES])
    assert not report.errors
    result = run(Engine(report.ruleset), pcap_events(pcap, Config()), horizon(report, 5.0))
    return list(result.alerts.values())


def _by_rule(alerts: list[Alert], name: str) -> list[Alert]:
    return [a for a in alerts if NAMES[a.rule.id] == name]


def test_one_probe_a_minute_over_30_ports_is_caught_within_30_minutes() -> None:
    alerts = _alerts(RULES / "port_scan_very_slow.tests" / "attack.pcap")
    assert {NAMES[a.rule.id] for a in alerts} == {"port_scan_very_slow"}  # no shorter rule sees it
    (alert,) = alerts
    assert alert.group == {"source.ip": ATTACKER, "destination.ip": SERVER}
    # probes at T0, T0+60 … : the 20th distinct port (19 minutes in) opens the alert
    assert alert.first_seen == pytest.approx(T0, abs=1)
    assert alert.last_seen - T0 < 30 * 60
    assert threat_fields(alert.rule.tags)["technique"]["id"] == ["T1046"]


def test_scan_delay_5s_over_12_ports_is_a_paced_scan() -> None:
    alerts = _alerts(RULES / "port_scan_paced.tests" / "attack.pcap")
    (alert,) = _by_rule(alerts, "port_scan_paced")
    assert alert.group == {"source.ip": ATTACKER, "destination.ip": SERVER}
    assert not _by_rule(alerts, "port_scan_vertical")  # under the 25-in-30-s rule


def test_distributed_scan_is_caught_within_60_seconds_by_destination() -> None:
    alerts = _alerts(RULES / "port_scan_distributed.tests" / "attack.pcap")
    (alert,) = _by_rule(alerts, "port_scan_distributed")
    assert alert.group == {"destination.ip": SERVER}
    assert alert.first_seen - T0 < 60
    # per source only the low paced rule (10 ports each): no medium/high per-source scan alert
    others = {(NAMES[a.rule.id], a.rule.level) for a in alerts} - {("port_scan_distributed",
                                                                     "medium")}
    assert others == {("port_scan_paced", "low")}


SCANS = {"tcp_untracked_scan": "tcp_untracked_scan", "tcp_invalid_flags": "tcp_invalid_flags_scan"}


@pytest.mark.parametrize("rule", ["tcp_untracked_scan", "tcp_invalid_flags"])
def test_probe_scans_name_the_scanner_as_source(rule: str) -> None:
    alerts = _alerts(RULES / f"{rule}.tests" / "attack.pcap")
    scans = [a for a in alerts if NAMES[a.rule.id] == SCANS[rule]]
    assert {a.group["source.ip"] for a in scans} == {ATTACKER, "203.0.113.67"}
    assert {a.group["destination.ip"] for a in scans} == {SERVER}


def test_real_hping3_syn_flood_at_200_per_second_is_a_low_signal() -> None:
    """hping3 -S -i u5000 -c 2000 captured in the lab (tests/fixtures/pcap/tools): the low-rate
    rule, and no scan alert from the flooder's own kernel resetting the SYN-ACKs."""
    alerts = _alerts(REPO / "tests" / "fixtures" / "pcap" / "tools" / "syn_flood_200pps_10s.pcap")
    assert [(NAMES[a.rule.id], a.rule.level, a.group) for a in alerts] == [
        ("syn_flood_low", "low", {"destination.ip": "198.18.0.10", "destination.port": 8080})]


def test_a_sustained_low_rate_syn_flood_escalates_after_five_minutes() -> None:
    """60 SYNs a second (under syn_flood_low's 100) toward one service: medium after 300 s of
    it, with T1499.001, never for 240 s of the same."""
    (alert,) = _by_rule(_alerts(RULES / "syn_flood_sustained.tests" / "attack.pcap"),
                        "syn_flood_sustained")
    assert alert.group == {"destination.ip": SERVER, "destination.port": 8080}
    assert alert.first_seen - T0 < 2  # its window starts with the flood; 240 s: see below
    assert alert.rule.level == "medium"
    technique = threat_fields(alert.rule.tags)["technique"]["subtechnique"]["id"]
    assert "T1499.001" in technique, technique
    benign = _alerts(RULES / "syn_flood_sustained.tests" / "benign.pcap")
    assert _by_rule(benign, "syn_flood_sustained") == []
