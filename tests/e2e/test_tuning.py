"""End to end: silencing a false positive of a shipped rule in the real `vedette run`.

The shipped sshd brute-force rule (rules/auth/ssh_bruteforce.yml) reads a real auth log file;
a Sigma filter in a local rule folder, ``detection.trusted_sources`` and
``detection.disabled_rules`` silence parts of it, and SIGHUP reloads the configuration.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, AgentProcess

pytestmark = pytest.mark.e2e

BRUTE = "37b4f665-86db-49b5-b86f-fa53159d6c25"      # SSH brute force from one source
FAILURE = "46a857c9-db04-4b90-b89d-bd4c940f3350"    # its base rule (one failed attempt)
SPRAY = "76a389f4-f83f-5834-acbe-89aa1717759e"      # SSH password spraying
WAIT = 30.0  # seconds; the CI machine is shared
SCANNER = "198.18.0.7"
OTHER = "198.18.0.66"

FILTER = """\
title: Our vulnerability scanner tries default passwords
id: 8f5a3d0e-2b7c-4e91-a6d4-3c2b1a0f9e88
status: test
description: The scanner at 198.18.0.7 fails SSH logins on purpose.
logsource:
  product: linux
  service: sshd
filter:
  rules:
    - ssh_bruteforce
  scanner:
    source.ip|cidr: 198.18.0.0/29
  condition: not scanner
"""


def _collectors(auth_log: Path) -> dict[str, Any]:
    return {
        "auth_logs": {"paths": [str(auth_log)], "journal": "off", "start_at_end": False,
                      "poll_interval_seconds": 0.1, "watch_integrity": False},
        "process": {"enabled": False}, "sockets": {"enabled": False},
        "web_logs": {"enabled": False}, "auditd": {"enabled": False},
        "kernel_modules": {"enabled": False}, "host_metrics": {"enabled": False},
        "fim": {"enabled": False},
    }


def _fail(log: Path, ip: str, n: int, user: str = "root") -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with log.open("a") as out:
        for i in range(n):
            out.write(f"{stamp} web1 sshd[{100 + i}]: Failed password for {user}{i} from {ip} "
                      f"port {40000 + i} ssh2\n")


def _groups(agent: AgentProcess, rule: str) -> set[str]:
    return {a["vedette"]["group"].get("source.ip", "") for a in agent.alerts()
            if a["rule"]["id"] == rule}


def _wait(agent: AgentProcess, predicate: Callable[[], bool], what: str) -> None:
    agent.wait_for(predicate, timeout=WAIT, what=what)


def _processed(agent: AgentProcess) -> float:
    return agent.sample("vedette_events_processed_total", {"stage": "detection"}) or 0.0


def _after_lines(agent: AgentProcess, write: Callable[[], None], lines: int) -> None:
    """Write log lines and wait until detection processed them all."""
    before = _processed(agent)
    write()
    _wait(agent, lambda: _processed(agent) >= before + lines, what=f"{lines} auth events")


def test_sigma_filter_silences_one_source_of_a_shipped_rule(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    local = tmp_path / "local-rules"
    local.mkdir()
    (local / "scanner.yml").write_text(FILTER)
    auth_log = tmp_path / "auth.log"
    auth_log.touch()
    agent = agent_factory({
        **_collectors(auth_log),
        "detection": {"watch_rules": False, "rule_paths": [str(REPO / "rules"), str(local)]},
    }).start()
    _after_lines(agent, lambda: _fail(auth_log, SCANNER, 8), 8)
    _fail(auth_log, OTHER, 6)
    _wait(agent, lambda: OTHER in _groups(agent, BRUTE), what="brute-force alert for OTHER")
    assert _groups(agent, BRUTE) == {OTHER}
    # the filter names the brute-force rule only: spraying still sees the scanner
    _wait(agent, lambda: SCANNER in _groups(agent, SPRAY), what="spraying alert")
    assert agent.sample("vedette_rule_matches_silenced_total",
                        {"rule": FAILURE, "reason": "filter"}) == 8
    assert agent.stop() == 0


def test_disabled_rules_and_trusted_sources_survive_sighup(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    auth_log = tmp_path / "auth.log"
    auth_log.touch()
    tuning = {"watch_rules": False, "disabled_rules": ["ssh_password_spraying"],
              "trusted_sources": [{"cidrs": ["198.18.0.0/29"], "rules": ["ssh_bruteforce"]}]}
    agent = agent_factory({**_collectors(auth_log), "detection": tuning}).start()
    assert agent.sample("vedette_rules_disabled") == 1

    # a reload with the same configuration keeps both
    agent.send_signal(signal.SIGHUP)
    _wait(agent, lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 1,
                   what="first reload")
    _after_lines(agent, lambda: _fail(auth_log, SCANNER, 6), 6)
    _fail(auth_log, OTHER, 6)
    _wait(agent, lambda: OTHER in _groups(agent, BRUTE), what="brute force of OTHER")
    assert _groups(agent, BRUTE) == {OTHER}
    assert _groups(agent, SPRAY) == set()  # disabled, although both sources sprayed 6 names
    assert agent.sample("vedette_rule_matches_silenced_total",
                        {"rule": FAILURE, "reason": "trusted_source"}) == 6

    # the operator removes both and reloads: the rule set changes without a restart
    config = agent.config
    config["detection"] = {"watch_rules": False}
    agent.write_config(config)
    agent.send_signal(signal.SIGHUP)
    _wait(agent, lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 2,
                   what="second reload")
    # the gauge describes the running rule set: it follows once the swap is in
    _wait(agent, lambda: agent.sample("vedette_rules_disabled") == 0, what="gauge after swap")
    _fail(auth_log, SCANNER, 6, user="admin")
    _wait(agent, lambda: SCANNER in _groups(agent, SPRAY), what="spraying alert after reload")
    _wait(agent, lambda: SCANNER in _groups(agent, BRUTE), what="scanner alerts after reload")

    # a broken tuning entry is refused: the running set stays
    config["detection"] = {"watch_rules": False, "trusted_sources": [{"cidrs": ["nope"]}]}
    agent.config_path.write_text(yaml.safe_dump(config))
    agent.send_signal(signal.SIGHUP)
    _wait(agent, lambda: agent.sample("vedette_config_reloads_total", {"result": "error"}) == 1,
                   what="refused reload")
    assert "not an IP address or network" in agent.logs()
    assert agent.stop() == 0
