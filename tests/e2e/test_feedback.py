"""Feedback for humans: one readable line per alert on a terminal (not with --quiet, not under
systemd), and `vedette status` asking the running agent over its metrics endpoint."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.events import format_timestamp
from tests.conftest import REPO, AgentProcess
from tests.rule_texts import ONLY_TEST_COLLECTORS, process_rule

pytestmark = pytest.mark.e2e

Factory = Callable[..., AgentProcess]
RULE = process_rule("77777777-7777-4777-8777-777777777777", level="high")
ONLY_FEED = ONLY_TEST_COLLECTORS


def setup(agent_factory: Factory, tmp_path: Path, **extra: Any) -> tuple[AgentProcess, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "nc.yml").write_text(RULE)
    feed = tmp_path / "events.jsonl"
    feed.touch()
    agent = agent_factory({**ONLY_FEED, **extra,
                           "detection": {"shipped_rules": False, "rule_paths": [str(rules)],
                                         "late_allowance_seconds": 60},
                           "inputs": {"event_files": [str(feed)],
                                      "event_files_interval_seconds": 0.2}})
    return agent, feed


def feed_netcat(feed: Path, user: str = "mallory") -> None:
    event = {"@timestamp": format_timestamp(time.time()),
             "logsource": {"product": "linux", "category": "process_creation"},
             "process.executable": "/usr/bin/nc", "process.command_line": "nc -l 4444",
             "user.name": user, "host.name": "web1"}
    with feed.open("a") as out:
        out.write(json.dumps(event) + "\n")


def read_until(fd: int, needle: str, timeout: float = 20.0) -> str:
    text = ""
    deadline = time.monotonic() + timeout
    while needle not in text and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                text += os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                break
    return text


def start_on_terminal(agent: AgentProcess, *extra: str, env: dict[str, str] | None = None
                      ) -> tuple[subprocess.Popen[bytes], int]:
    agent.write_config()
    master, slave = pty.openpty()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("VEDETTE_") and k not in ("JOURNAL_STREAM", "INVOCATION_ID",
                                                         "NOTIFY_SOCKET")}
    with agent.log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(agent.config_path),
             *extra], cwd=REPO, env={**base, **(env or {})}, stdout=slave, stderr=log)
    os.close(slave)
    agent.proc = proc
    agent.wait_ready()
    return proc, master


def test_a_terminal_gets_a_start_line_and_one_line_per_alert(
    agent_factory: Factory, tmp_path: Path
) -> None:
    agent, feed = setup(agent_factory, tmp_path)
    _, master = start_on_terminal(agent)
    try:
        banner = read_until(master, "Ctrl-C stops")
        assert "is watching. Alerts go to " in banner
        assert f"{agent.alerts_path} (JSON lines)" in banner
        feed_netcat(feed)
        text = read_until(master, "Netcat started")
        line = next(line for line in text.splitlines() if "Netcat started" in line)
        # time with its zone, level, title, key fields
        assert line[:19].count(":") == 2 and line[20:].split()[0].isalpha()
        assert " HIGH " in line and "user.name=mallory" in line
        assert "process.executable=/usr/bin/nc" in line
        assert not line.lstrip().startswith("{")  # not JSON
        assert agent.stop() == 0
    finally:
        os.close(master)


@pytest.mark.parametrize(("extra", "env"), [
    (("--quiet",), {}),
    ((), {"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}),
])
def test_quiet_and_systemd_print_no_alert_lines(
    agent_factory: Factory, tmp_path: Path, extra: tuple[str, ...], env: dict[str, str]
) -> None:
    agent, feed = setup(agent_factory, tmp_path)
    _, master = start_on_terminal(agent, *extra, env=env)
    try:
        feed_netcat(feed)
        agent.wait_for(lambda: bool(agent.alerts()), what="the alert in the JSON-lines sink")
        assert "Netcat started" not in read_until(master, "Netcat started", timeout=2)
        assert agent.stop() == 0
        if env:  # under systemd the logs are JSON lines
            lines = [line for line in agent.logs().splitlines() if line.strip()]
            assert lines and all(json.loads(line)["log.logger"] for line in lines)
    finally:
        os.close(master)


def vedette(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEDETTE_")}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_status_reports_what_the_running_agent_sees(
    agent_factory: Factory, tmp_path: Path
) -> None:
    agent, feed = setup(agent_factory, tmp_path)
    agent.start()
    feed_netcat(feed)
    agent.wait_for(lambda: bool(agent.alerts()), what="an alert")
    status = vedette("status", "--config", str(agent.config_path))
    assert status.returncode == 0, status.stdout + status.stderr
    out = status.stdout
    assert f"running at http://127.0.0.1:{agent.port} (up " in out
    assert "health:      ok" in out
    assert "rules:       1 detection, 0 correlation" in out
    assert any(line.split()[:2] == ["event_files", "running"] for line in out.splitlines())
    assert "queue:       " in out and "dropped since start: none" in out
    assert "elasticsearch: off" in out
    assert "last alert:  " in out and "1 opened since start" in out
    assert agent.stop() == 0
    down = vedette("status", "--config", str(agent.config_path))
    assert down.returncode == 3 and "no agent answers at" in down.stderr


def test_status_of_an_unhealthy_agent_names_the_reason_and_exits_1(
    agent_factory: Factory, tmp_path: Path
) -> None:
    agent, _ = setup(agent_factory, tmp_path, auth_logs={
        "enabled": True, "paths": [str(tmp_path / "none.log")],
        "journalctl": str(tmp_path / "none")})
    agent.start()
    status = vedette("status", "--config", str(agent.config_path))
    assert status.returncode == 1, status.stdout + status.stderr
    assert "health:      UNHEALTHY (1)" in status.stdout
    assert "- collector auth_logs is degraded or failed to start" in status.stdout
    assert any(line.split()[:2] == ["auth_logs", "degraded"]
               for line in status.stdout.splitlines())
    assert agent.stop() == 0
