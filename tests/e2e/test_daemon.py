"""End to end: the real `vedette run` in a subprocess, scraped, fed, reloaded and stopped."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, AgentProcess

from agent.events import format_timestamp

pytestmark = pytest.mark.e2e

CPU_RULE = REPO / "rules" / "host" / "cpu_saturation.yml"


def _cpu_rule_ids() -> set[str]:
    return {doc["id"] for doc in yaml.safe_load_all(CPU_RULE.read_text()) if doc}


def test_metrics_expose_host_series_and_build_info(agent_factory) -> None:
    agent: AgentProcess = agent_factory().start()
    agent.wait_for(lambda: agent.sample("vedette_host_cpus") is not None, what="host metrics")
    text = agent.scrape()
    assert 'vedette_build_info{' in text and 'version="' in text
    assert agent.sample("vedette_host_memory_total_bytes") > 0
    assert agent.sample("vedette_host_processes") > 0
    assert 'vedette_host_cpu_seconds_total{mode="user"}' in text
    assert "process_resident_memory_bytes" in text
    agent.wait_for(
        lambda: (agent.sample("vedette_events_processed_total", {"stage": "detection"}) or 0) > 0,
        what="host_metrics events through detection",
    )
    assert (agent.sample("vedette_job_runs_total", {"task": "collect_host_metrics"}) or 0) >= 1
    assert agent.stop() == 0


def test_cpu_threshold_alert_reaches_the_jsonl_sink(agent_factory, tmp_path: Path) -> None:
    """A fake host-metrics source (event file) reports 99 % CPU for 70 s → one real alert."""
    feed = tmp_path / "fake-host.jsonl"
    feed.touch()
    agent: AgentProcess = agent_factory(
        {"inputs": {"event_files": [str(feed)], "event_files_interval_seconds": 0.2},
         "host_metrics": {"enabled": False},
         # the fake samples are up to 80 s old: accept them as late events
         "detection": {"late_allowance_seconds": 120}}
    ).start()
    start = time.time() - 80
    with feed.open("a") as out:
        for i in range(8):
            event = {
                "@timestamp": format_timestamp(start + 10 * i),
                "logsource": {"product": "vedette", "category": "host_metrics"},
                "event.dataset": "vedette.host_metrics",
                "host.name": "fake-busy-host",
                "host.cpu.usage": 0.99,
            }
            out.write(json.dumps(event) + "\n")
    rule_ids = _cpu_rule_ids()
    agent.wait_for(
        lambda: any(a["rule"]["id"] in rule_ids for a in agent.alerts()), what="CPU alert"
    )
    alert = next(a for a in agent.alerts() if a["rule"]["id"] in rule_ids)
    assert alert["event"]["kind"] == "alert"
    assert alert["vedette"]["group"].get("host.name") == "fake-busy-host"
    assert alert["host"]["name"]
    assert agent.sample("vedette_alerts_total", {"rule": alert["rule"]["id"]}) == 1
    assert agent.stop() == 0


def test_sighup_with_broken_config_keeps_the_old_one(agent_factory) -> None:
    agent: AgentProcess = agent_factory().start()
    good = agent.config_path.read_text()
    agent.write_config(raw=good + "\nbogus_section: {a: 1}\n")
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "error"}) == 1,
        what="failed reload counted",
    )
    assert agent.proc.poll() is None
    assert "bogus_section" in agent.logs() and "unknown key" in agent.logs()
    agent.write_config(raw=good)
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 1,
        what="good reload counted",
    )
    assert agent.stop() == 0


def test_sighup_names_the_options_that_need_a_restart(agent_factory) -> None:
    agent: AgentProcess = agent_factory().start()
    config = copy.deepcopy(agent.config)
    config.setdefault("detection", {})["late_allowance_seconds"] = 30
    config["detection"]["meta_alert_threshold"] = 7
    config.setdefault("pipeline", {})["queue_size"] = 4096
    agent.write_config(config)
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 1,
        what="reload counted",
    )
    agent.wait_for(lambda: "only after a restart" in agent.logs(), what="restart warning")
    logs = agent.logs()
    assert "detection.late_allowance_seconds" in logs and "pipeline.queue_size" in logs
    assert "detection.meta_alert_threshold" not in logs  # applied in place
    assert agent.stop() == 0


def test_sighup_applies_rule_watching_and_tuning_without_naming_them(
    agent_factory, tmp_path: Path
) -> None:
    """watch_rules, its interval and the tuning options are applied by the reload itself (none
    of them is named in the restart warning), and the watch started by the reload works."""
    agent: AgentProcess = agent_factory().start()
    extra = tmp_path / "extra-rules"
    extra.mkdir(mode=0o750)
    rule = {"title": "watched rule", "id": "7f2c1a4e-0000-4000-8000-00000000a11e",
            "status": "test", "level": "low",
            "logsource": {"product": "linux", "category": "process_creation"},
            "detection": {"sel": {"Image|endswith": "/nothing-here"}, "condition": "sel"}}
    (extra / "watched.yml").write_text(yaml.safe_dump(rule))
    config = copy.deepcopy(agent.config)
    config["detection"] = {"watch_rules": True, "watch_interval_seconds": 0.5,
                           "extra_rule_paths": [str(extra)],
                           "disabled_rules": ["ssh_password_spraying"]}
    agent.write_config(config)
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 1,
        what="reload counted",
    )
    assert "only after a restart" not in agent.logs()
    # the watch the reload registered notices a changed rule file: a reload without a signal
    rule["title"] = "watched rule, edited"
    (extra / "watched.yml").write_text(yaml.safe_dump(rule))
    later = time.time() + 5
    os.utime(extra / "watched.yml", (later, later))
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 2,
        what="reload by the rule watch",
    )
    assert "rule files changed; reloading" in agent.logs()
    assert "only after a restart" not in agent.logs()
    assert agent.stop() == 0


def test_sigterm_drains_and_exits_zero_quickly(agent_factory) -> None:
    agent: AgentProcess = agent_factory().start()
    started = time.monotonic()
    assert agent.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 10
    assert "stopped" in agent.logs()


def test_invalid_config_at_start_exits_2_with_file_and_line(agent_factory) -> None:
    agent: AgentProcess = agent_factory()
    agent.write_config(raw="metrics:\n  port: not-a-number\n")
    result = subprocess.run(
        [*agent.command_prefix, sys.executable, "-m", "agent.cli", "run", "--config",
         str(agent.config_path)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert f"{agent.config_path}:2" in result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_promtool_accepts_a_real_scrape(agent_factory) -> None:
    agent: AgentProcess = agent_factory().start()
    agent.wait_for(lambda: agent.sample("vedette_host_cpus") is not None, what="host metrics")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=agent.scrape(), capture_output=True, text=True,
        timeout=30, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert agent.stop() == 0
