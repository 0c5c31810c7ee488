"""`vedette replay`: summary table, --json ECS documents, bad files, the shared input registry."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands import replay as command
from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.loader import load_rules
from agent.offline.clock import run
from agent.offline.inputs import INPUTS
from tests.network import craft as c
from tests.network.craft import ATTACKER, SERVER, T0
from tests.network.make_rule_fixtures import dns_tunnel, vertical_scan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "mixed.pcap"
    # A tunnel whose domain carries an escape sequence and invalid UTF-8: it must be alerted on
    # and printed escaped, never raw.
    hostile = [c.dns_query(T0 + 3 + i * 0.1, SERVER, f"q{i}.x.\x1b[31m\xff.example".encode(
        "latin-1"), "TXT", sport=45000 + i) for i in range(12)]
    pkts = [*vertical_scan(), *dns_tunnel(), *hostile]
    return c.write(path, pkts)


def vedette(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_summary_table(mixed_pcap: Path) -> None:
    proc = vedette("replay", str(mixed_pcap), "--rules", str(REPO / "rules" / "network"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Vertical TCP port scan" in out
    assert "DNS tunnel - many long random subdomains of one domain" in out
    assert f"source.ip={ATTACKER}, destination.ip={SERVER}" in out
    assert "packets" in out.splitlines()[0] and "alert(s)" in out.splitlines()[-1]


def test_json_one_final_ecs_document_per_alert(mixed_pcap: Path) -> None:
    proc = vedette("replay", str(mixed_pcap), "--json", "--rules", str(REPO / "rules"))
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert docs, proc.stderr
    ids = [d["event"]["id"] for d in docs]
    assert len(ids) == len(set(ids))
    scan = next(d for d in docs if d["rule"]["name"] == "Vertical TCP port scan")
    assert scan["threat"]["technique"]["id"] == ["T1046"]
    assert scan["source"]["ip"] == ATTACKER
    assert scan["event"]["kind"] == "alert"


def test_hostile_names_are_escaped_in_table_and_json(mixed_pcap: Path) -> None:
    rules = str(REPO / "rules" / "network")
    table = vedette("replay", str(mixed_pcap), "--rules", rules)
    docs = vedette("replay", str(mixed_pcap), "--json", "--rules", rules)
    for out in (table.stdout, docs.stdout):
        assert "\x1b" not in out and "\ufffd" not in out
    assert "\\027\\09131m\\255.example" in table.stdout
    hostile = [json.loads(line) for line in docs.stdout.splitlines()
               if "255.example" in line]
    assert hostile and hostile[0]["rule"]["name"] == "DNS tunnel - TXT/NULL query volume"


def test_bad_file_exit_1_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 64)
    proc = vedette("replay", str(bad))
    assert proc.returncode == 1
    assert "not a pcap or pcapng file" in proc.stderr
    missing = vedette("replay", str(tmp_path / "none.pcap"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_same_path_as_fixtures_and_registry_is_shared(mixed_pcap: Path) -> None:
    assert "pcap" in INPUTS and "auth" in INPUTS
    report = load_rules([REPO / "rules" / "network"])
    engine = Engine(report.ruleset)
    result = run(engine, INPUTS["pcap"](mixed_pcap, Config(), None), 1000.0)
    titles = {a.rule.title for a in result.alerts.values()}
    assert {"Vertical TCP port scan", "DNS tunnel - TXT/NULL query volume"} <= titles
    assert all(a.status.value == "closed" for a in result.alerts.values())


def test_log_kinds_run_through_the_same_command(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    command.add_parser(parser.add_subparsers())
    log = tmp_path / "auth.log"
    log.write_text("".join(
        f"Nov 21 10:00:{i:02d} web sshd[{100 + i}]: Failed password for root from 203.0.113.9 "
        f"port {4000 + i} ssh2\n" for i in range(40)))
    args = parser.parse_args(["replay", str(log), "--log", "auth", "--rules", str(REPO / "rules")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 lines: 40 parsed, 0 unclassified, 0 malformed; 40 events")
