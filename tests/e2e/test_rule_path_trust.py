"""The running daemon refuses world-writable rule paths, at start and on a hot reload."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, AgentProcess

from agent.detection.path_trust import UNSAFE_PATH_RULE

pytestmark = pytest.mark.e2e

BRUTE = REPO / "rules" / "auth" / "ssh_bruteforce.yml"


def _rule_dir(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    rules.chmod(0o755)
    shutil.copy(BRUTE, rules / "ssh_bruteforce.yml")
    (rules / "ssh_bruteforce.yml").chmod(0o644)
    return rules


def _refusal_alerts(agent: AgentProcess) -> list[dict[str, object]]:
    return [a for a in agent.alerts() if a["rule"]["id"] == UNSAFE_PATH_RULE.id]


def test_hot_reload_of_a_world_writable_rule_dir_is_refused(agent_factory, tmp_path: Path
                                                            ) -> None:
    rules = _rule_dir(tmp_path)
    agent: AgentProcess = agent_factory({"detection": {  # only this folder (no shipped rules)
        "rule_paths": [str(rules)], "shipped_rules": False,
        "watch_rules": True, "watch_interval_seconds": 0.3}}).start()
    agent.wait_for(lambda: agent.sample("vedette_rules_loaded", {"kind": "correlation"}) == 1,
                   what="rules loaded")
    assert agent.sample("vedette_rule_paths_refused") == 0
    # an unprivileged user's attack: the folder is world-writable, the threshold raised
    rules.chmod(0o777)
    text = (rules / "ssh_bruteforce.yml").read_text().replace("gte: 5", "gte: 100000")
    (rules / "ssh_bruteforce.yml").write_text(text)
    agent.wait_for(
        lambda: agent.sample("vedette_config_reloads_total", {"result": "error"}) == 1,
        what="refused reload")
    assert agent.sample("vedette_rule_paths_refused") == 1
    assert agent.sample("vedette_rules_loaded", {"kind": "correlation"}) == 1  # old rules
    assert "is writable by everyone" in agent.logs()
    agent.wait_for(lambda: bool(_refusal_alerts(agent)), what="internal alert")
    (alert,) = _refusal_alerts(agent)
    assert alert["vedette"]["group"] == {"file.path": str(rules)}
    assert alert["event"]["severity"] == 4
    # fixed permissions: the next change is loaded again
    rules.chmod(0o755)
    (rules / "ssh_bruteforce.yml").write_text(BRUTE.read_text())
    agent.wait_for(lambda: agent.sample("vedette_config_reloads_total", {"result": "ok"}) == 1,
                   what="reload after the fix")
    assert agent.sample("vedette_rule_paths_refused") == 0
    assert agent.stop() == 0


def test_world_writable_rule_dir_at_start_loads_nothing_unless_allowed(
        agent_factory, tmp_path: Path) -> None:
    rules = _rule_dir(tmp_path)
    rules.chmod(0o777)
    # the refused folder is the only one: allow_empty, else the agent refuses to start blind
    agent: AgentProcess = agent_factory({"detection": {
        "rule_paths": [str(rules)], "shipped_rules": False, "allow_empty": True}}).start()
    agent.wait_for(lambda: bool(_refusal_alerts(agent)), what="internal alert")
    assert agent.sample("vedette_rule_paths_refused") == 1
    assert (agent.sample("vedette_rules_loaded", {"kind": "correlation"}) or 0) == 0
    assert agent.stop() == 0
    allowed: AgentProcess = agent_factory({"detection": {
        "rule_paths": [str(rules)], "shipped_rules": False,
        "allow_unsafe_rule_paths": True}}).start()
    allowed.wait_for(
        lambda: allowed.sample("vedette_rules_loaded", {"kind": "correlation"}) == 1,
        what="rules loaded when allowed")
    assert allowed.sample("vedette_rule_paths_refused") == 0 and not _refusal_alerts(allowed)
    assert allowed.stop() == 0
