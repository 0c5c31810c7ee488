"""Files the daemon creates are private even when it is started under umask 022."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from conftest import AgentProcess, free_port

from agent.detection.path_trust import UNSAFE_PATH_RULE

pytestmark = pytest.mark.e2e


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


def test_umask_022_still_gives_private_state_alerts_spool_and_baselines(
        agent_factory, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "app.conf").write_text("x=1\n")
    rules = tmp_path / "open-rules"  # refused (world-writable): its internal alert is an alert
    rules.mkdir()
    rules.chmod(0o777)
    agent: AgentProcess = agent_factory(
        {"detection": {"rule_paths": [str(rules)]},
         "fim": {"enabled": True, "root": str(watched), "paths": ["/app.conf"]},
         "elasticsearch": {"hosts": [f"http://127.0.0.1:{free_port()}"]}},
        command_prefix=["sh", "-c", 'umask 022 && exec "$@"', "sh"])
    agent.start()
    agent.wait_for(lambda: any(a["rule"]["id"] == UNSAFE_PATH_RULE.id for a in agent.alerts()),
                   what="an alert written")
    state = Path(agent.config["agent"]["state_dir"])
    agent.wait_for(lambda: any("spool" in name for name in _modes(state)), what="spool")
    assert agent.stop() == 0
    modes = _modes(state)
    assert modes["."] == 0o750
    assert any("baseline" in name for name in modes), modes  # fim baseline written
    for name, mode in modes.items():
        assert mode & 0o027 == 0, (name, oct(mode))  # nothing for others, no group write
    assert stat.S_IMODE(agent.alerts_path.stat().st_mode) & 0o027 == 0
