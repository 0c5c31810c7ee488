"""Blocklist formats, longest-prefix matching and the scheduled reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from agent.threatintel.feeds import load_feeds, parse_line
from agent.threatintel.prefixes import PrefixTable, table_of
from agent.threatintel.reloader import ThreatIntelReloader


@pytest.mark.parametrize(
    ("line", "network"),
    [
        ("1.2.3.4", "1.2.3.4/32"),
        ("  10.0.0.0/8  ", "10.0.0.0/8"),
        ("1.10.16.0/20 ; SBL256894", "1.10.16.0/20"),
        ('{"cidr":"1.19.0.0/16","sblid":"SBL434604","rir":"apnic"}', "1.19.0.0/16"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("5.6.7.8 # comment", "5.6.7.8/32"),
        ("# header", None),
        ("; Spamhaus header", None),
        ('{"type":"metadata","timestamp":1}', None),
        ("", None),
    ],
)
def test_feed_line_formats(line: str, network: str | None) -> None:
    assert parse_line(line) == network


@pytest.mark.parametrize("line", ["300.1.1.1", "{not json", "[1]", "hello world"])
def test_bad_lines_raise(line: str) -> None:
    with pytest.raises(ValueError):
        parse_line(line)


def test_longest_prefix_wins_and_families_are_separate() -> None:
    table: PrefixTable[str] = table_of(["10.0.0.0/8"], "wide")
    table.add(__import__("ipaddress").ip_network("10.1.2.0/24"), "narrow")
    assert table.lookup("10.1.2.3") == (24, "narrow")
    assert table.lookup("10.9.9.9") == (8, "wide")
    assert table.lookup("11.0.0.1") is None
    assert "10.0.0.1" in table and "::1" not in table and 42 not in table
    v6 = table_of(["2001:db8::/32"], True)
    assert v6.lookup("2001:db8::1") == (32, True) and v6.lookup("10.0.0.1") is None


def test_load_feeds_reports_bad_lines_and_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "firehol_level1.netset"
    good.write_text("# FireHOL\n192.0.2.0/24\n198.51.100.7\nbogus\n")
    intel = load_feeds([good, tmp_path / "missing.txt"])
    assert intel.feeds == {"firehol_level1": 2}
    assert intel.match(bytes([192, 0, 2, 9])) == "firehol_level1"
    assert intel.match(bytes([192, 0, 3, 9])) is None
    assert intel.error_count == 2
    assert any("firehol_level1.netset:4" in str(e) for e in intel.errors)


def test_reloader_swaps_only_when_files_change(tmp_path: Path) -> None:
    feed = tmp_path / "drop.txt"
    feed.write_text("192.0.2.0/24 ; SBL1\n")
    metrics = AgentMetrics(CollectorRegistry())
    reloader = ThreatIntelReloader([feed], 60.0, metrics)
    first = reloader()
    assert first is not None and len(first) == 1
    assert reloader.collect() == [] and reloader() is first
    feed.write_text("192.0.2.0/24 ; SBL1\n203.0.113.0/24 ; SBL2\n")
    os.utime(feed, ns=(1, 1))
    reloader.collect()
    second = reloader()
    assert second is not first and second is not None and len(second) == 2
    value = metrics.registry.get_sample_value("vedette_threat_intel_networks", {"feed": "drop"})
    assert value == 2
