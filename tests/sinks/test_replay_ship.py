"""`vedette replay FILE --ship`: an incident's alerts go through the configured sinks — the JSON
lines file and Elasticsearch via its spool — and the command exits once all are acknowledged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.sinks.es_docs import latest_index
from tests.conftest import REPO
from tests.es_server import FakeElasticsearch

SCAN = REPO / "rules" / "network" / "port_scan_vertical.tests" / "attack.pcap"


def _replay(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "replay", str(SCAN), "--config", str(config), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def test_replay_ship_delivers_every_alert_once(server: FakeElasticsearch, tmp_path: Path) -> None:
    if not SCAN.exists():
        pytest.skip("the port-scan fixture is not in the repository")
    alerts_file = tmp_path / "alerts.jsonl"
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(tmp_path / "state")},
        "sinks": {"jsonl": {"path": str(alerts_file)}},
        "elasticsearch": {"hosts": [server.url], "batch_max_age_seconds": 0.1},
    }))
    first = _replay(config, "--ship", "--json")
    assert first.returncode == 0, first.stderr
    printed = [json.loads(line) for line in first.stdout.splitlines() if line]
    assert printed, "the scan fixture raised no alert"
    ids = {doc["event"]["id"] for doc in printed}
    stored = {d.source["event"]["id"] for d in server.cluster.docs(latest_index("default"))}
    assert stored == ids
    assert {json.loads(line)["event"]["id"] for line in alerts_file.read_text().splitlines()} == ids
    assert "delivered" in first.stderr and "0 still spooled" in first.stderr

    again = _replay(config, "--ship")  # same incident backfilled twice: no duplicate
    assert again.returncode == 0, again.stderr
    assert len(server.cluster.docs(latest_index("default"))) == len(ids)


def test_replay_ship_reports_what_is_left_when_elasticsearch_is_down(tmp_path: Path) -> None:
    if not SCAN.exists():
        pytest.skip("the port-scan fixture is not in the repository")
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(tmp_path / "state")},
        "sinks": {"jsonl": {"enabled": False}},
        "elasticsearch": {"hosts": ["http://127.0.0.1:9"], "retry_backoff_initial_seconds": 0.1,
                          "retry_backoff_max_seconds": 0.2},
    }))
    result = _replay(config, "--ship", "--ship-timeout", "2")
    assert result.returncode == 3, result.stderr
    assert "still spooled" in result.stderr
    assert "0 still spooled" not in result.stderr
