"""`vedette run` refuses to start blind or broken (one line, README's exit codes, no traceback),
a reload that would empty the rule set is refused, and /healthz tells the truth."""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentProcess
from tests.rule_texts import ONLY_TEST_COLLECTORS, process_rule, unsupported_field_rule

pytestmark = pytest.mark.e2e

Factory = Callable[..., AgentProcess]
QUIET = ONLY_TEST_COLLECTORS
PROCESS_RULE = process_rule("55555555-5555-4555-8555-555555555555")
FIM_RULE_NOBODY_CAN_RUN = unsupported_field_rule("66666666-6666-4666-8666-666666666666")


def refused(agent: AgentProcess, code: int) -> list[str]:
    """Start, expect exit ``code``; return the log lines at ERROR."""
    agent.start(wait=False)
    assert agent.proc is not None
    assert agent.proc.wait(30) == code, agent.logs()
    text = agent.logs()
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if " ERROR " in line]


def healthz(agent: AgentProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(agent.url("/healthz"), timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def rules_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yml").write_text(text)
    return folder


def test_no_rules_refuses_to_start_with_one_line(agent_factory: Factory, tmp_path: Path) -> None:
    folder = rules_dir(tmp_path)
    errors = refused(agent_factory({"detection": {"shipped_rules": False,
                                                  "rule_paths": [str(folder)]}}), 2)
    assert len(errors) == 1 and "refusing to start" in errors[0]
    assert "no rules loaded" in errors[0] and "detection.allow_empty" in errors[0]


def test_a_missing_rule_path_refuses_to_start(agent_factory: Factory, tmp_path: Path) -> None:
    errors = refused(agent_factory({"detection": {"rule_paths": [str(tmp_path / "nope")]}}), 2)
    assert len(errors) == 1
    assert f"{tmp_path / 'nope'}: no such file or directory (detection.rule_paths)" in errors[0]


def test_every_rule_of_an_enabled_collector_rejected_refuses(
    agent_factory: Factory, tmp_path: Path
) -> None:
    folder = rules_dir(tmp_path, proc=PROCESS_RULE, fim=FIM_RULE_NOBODY_CAN_RUN)
    detection = {"shipped_rules": False, "rule_paths": [str(folder)]}
    errors = refused(agent_factory({**QUIET, "fim": {"enabled": True}, "detection": detection}), 2)
    assert len(errors) == 1 and "logsource linux/file_event (collector fim)" in errors[0]
    # the same rules with FIM off: nothing is blind, the agent starts
    agent = agent_factory({**QUIET, "detection": detection}).start()
    assert agent.stop() == 0


def test_allow_empty_starts_and_healthz_says_no_rules(
    agent_factory: Factory, tmp_path: Path
) -> None:
    folder = rules_dir(tmp_path)
    agent = agent_factory({**QUIET, "detection": {"shipped_rules": False,
                                                  "rule_paths": [str(folder)],
                                                  "allow_empty": True}}).start()
    status, body = healthz(agent)
    assert status == 503 and "no rules loaded" in body.splitlines()
    assert agent.stop() == 0


def test_healthz_is_200_when_everything_runs_and_503_naming_a_degraded_collector(
    agent_factory: Factory, tmp_path: Path
) -> None:
    healthy = agent_factory(QUIET).start()
    status, body = healthz(healthy)
    assert (status, body) == (200, "ok\n"), body
    assert healthy.stop() == 0
    # no auth log file and no usable journal: the collector says so (once) and is degraded
    blind = agent_factory({**QUIET, "auth_logs": {
        "enabled": True, "journal": "auto", "paths": [str(tmp_path / "no-auth.log")],
        "journalctl": str(tmp_path / "no-journalctl")}})
    blind.start()
    status, body = healthz(blind)
    assert status == 503
    assert "collector auth_logs is degraded or failed to start" in body.splitlines()
    assert blind.sample("vedette_collector_degraded", {"collector": "auth_logs"}) == 1
    warnings = [line for line in blind.logs().splitlines() if "no authentication log" in line]
    assert len(warnings) == 1  # said once
    assert blind.stop() == 0


def test_a_reload_that_would_empty_the_rules_is_refused(
    agent_factory: Factory, tmp_path: Path
) -> None:
    folder = rules_dir(tmp_path, proc=PROCESS_RULE)
    agent = agent_factory({**QUIET, "detection": {"shipped_rules": False,
                                                  "rule_paths": [str(folder)]}}).start()
    (folder / "proc.yml").unlink()
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(lambda: (agent.sample("vedette_config_reloads_total",
                                         {"result": "error"}) or 0) >= 1, what="refused reload")
    assert agent.sample("vedette_rules_loaded", {"kind": "detection"}) == 1
    assert "reload refused: the new rule set would leave the agent blind" in agent.logs()
    assert healthz(agent)[0] == 200
    assert agent.stop() == 0


def test_metrics_port_in_use_is_one_line_and_exit_3(agent_factory: Factory) -> None:
    agent = agent_factory(QUIET)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", agent.port))
        busy.listen()
        errors = refused(agent, 3)
    assert len(errors) == 1
    assert f"127.0.0.1:{agent.port}: the port is already in use" in errors[0]


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"basic_auth_username": "prom", "basic_auth_password_file": "{tmp}/missing-password"},
     "metrics.basic_auth_password_file: {tmp}/missing-password: cannot read: No such file"),
    ({"tls_cert_file": "{tmp}/cert.pem", "tls_key_file": "{tmp}/key.pem"},
     "metrics.tls_cert_file: {tmp}/cert.pem / {tmp}/key.pem: cannot load"),
])
def test_unusable_metrics_files_are_exit_2_with_file_and_line(
    agent_factory: Factory, tmp_path: Path, metrics: dict[str, Any], expected: str
) -> None:
    values = {k: v.format(tmp=tmp_path) for k, v in metrics.items()}
    agent = agent_factory({**QUIET, "metrics": values})
    errors = refused(agent, 2)
    assert len(errors) == 1, errors
    assert f"{agent.config_path}:" in errors[0]
    assert expected.format(tmp=tmp_path) in errors[0]


def test_an_invalid_cidr_is_exit_2(agent_factory: Factory) -> None:
    agent = agent_factory({**QUIET, "network": {"local_networks": ["10.0.0.0/33"]}})
    errors = refused(agent, 2)
    assert len(errors) == 1 and "network.local_networks.0: '10.0.0.0/33' is not a CIDR" in \
        errors[0]


def test_a_reload_to_a_config_with_an_unusable_file_is_refused(
    agent_factory: Factory, tmp_path: Path
) -> None:
    agent = agent_factory(QUIET).start()
    agent.config["threat_intel"] = {"files": [str(tmp_path / "no-feed.txt")]}
    agent.write_config()
    agent.send_signal(signal.SIGHUP)
    agent.wait_for(lambda: (agent.sample("vedette_config_reloads_total",
                                         {"result": "error"}) or 0) >= 1, what="refused reload")
    assert f"threat_intel.files.0: {tmp_path / 'no-feed.txt'}: cannot read" in agent.logs()
    assert agent.stop() == 0
