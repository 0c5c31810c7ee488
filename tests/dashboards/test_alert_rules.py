"""The Prometheus alert rules: promtool check/test, catalogue names, bounded labels, coverage."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from generator.promql import usage

from .helpers import BOUNDED_LABELS, RULE_TESTS, RULES

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

# What the issue asks the rules to cover, as alert names.
REQUIRED = {
    "VedetteAgentDown", "VedetteAgentRestarting",                            # availability
    "VedetteEventsDropped", "VedetteCollectorDegraded", "VedetteExecEventsLost",  # degraded
    "VedetteNoRulesLoaded", "VedetteCollectorErrors",                        # blind
    "VedetteCaptureDropping", "VedetteCaptureBudgetExhausted",
    "VedetteRuleLoadErrors", "VedetteReloadRefused", "VedetteAlertStorm",
    "VedetteSpoolGrowing", "VedetteShippingFailing", "VedetteElasticsearchUnreachable",
    "VedetteSinkFailing", "VedetteSinkBacklogGrowing",                       # delivery
    "VedetteHighCPU", "VedetteHighMemory",                                   # resources
}


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    proc = subprocess.run([str(PROMTOOL), "test", "rules", RULE_TESTS.name],
                          cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path) -> None:
    """A wrong expectation is reported: the unit tests compare labels and annotations."""
    broken = RULE_TESTS.read_text().replace("severity: critical, job: vedette", "severity: info,"
                                            " job: vedette", 1)
    (tmp_path / RULE_TESTS.name).write_text(broken)
    shutil.copy(RULES, tmp_path / RULES.name)
    proc = subprocess.run([str(PROMTOOL), "test", "rules", RULE_TESTS.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


@needs_promtool
def test_example_prometheus_config_is_valid(tmp_path) -> None:
    example = yaml.safe_load((RULES.parent / "prometheus.example.yml").read_text())
    assert [Path(p).name for p in example["rule_files"]] == [RULES.name]
    example["rule_files"] = [str(RULES)]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(example))
    proc = subprocess.run([str(PROMTOOL), "check", "config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_required_alerts_exist(alert_rules: list[dict[str, Any]]) -> None:
    names = [r["alert"] for r in alert_rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED


def test_every_alert_has_a_firing_and_a_silent_unit_test(alert_rules) -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    names = {r["alert"] for r in alert_rules}
    assert names <= fired, f"never shown firing: {names - fired}"
    assert names <= silent, f"never shown staying silent: {names - silent}"


def test_rules_use_catalogued_metrics_and_bounded_labels(alert_rules, allowed_metrics) -> None:
    for rule in alert_rules:
        found = usage(rule["expr"])
        assert found.metrics, rule["alert"]
        assert found.metrics <= allowed_metrics, (rule["alert"], found.metrics - allowed_metrics)
        assert found.labels <= BOUNDED_LABELS, (rule["alert"], found.labels - BOUNDED_LABELS)


def test_rules_are_labelled_and_explained(alert_rules, dashboards) -> None:
    uids = {d["uid"] for d in dashboards.values()}
    for rule in alert_rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert notes["dashboard"].split("/")[2] in uids, rule["alert"]
