"""Shared test fixtures: a real `vedette run` subprocess, free ports, repository paths."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class AgentProcess:
    """A `vedette run` subprocess with its own config, state dir, alert file and log file."""

    workdir: Path
    config: dict[str, Any]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    command_prefix: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.workdir / "vedette.yaml"

    @property
    def alerts_path(self) -> Path:
        return Path(self.config["sinks"]["jsonl"]["path"])

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def write_config(self, config: dict[str, Any] | None = None, raw: str | None = None) -> None:
        if config is not None:
            self.config = config
        self.config_path.write_text(raw if raw is not None else yaml.safe_dump(self.config))

    def start(self, wait: bool = True, timeout: float = 30.0) -> AgentProcess:
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VEDETTE_")}
        env.pop("NOTIFY_SOCKET", None)
        for name in ("JOURNAL_STREAM", "INVOCATION_ID"):  # a CI under systemd: keep text logs
            env.pop(name, None)
        env.update(self.extra_env)
        cmd = [*self.command_prefix, sys.executable, "-m", "agent.cli", "run",
               "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        if wait:
            self.wait_ready(timeout)
        return self

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                # /readyz: started (/healthz may rightly be 503: a degraded collector here)
                with urllib.request.urlopen(self.url("/readyz"), timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"agent not ready after {timeout}s:\n{self.logs()}")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url(), timeout=5) as resp:
            return resp.read().decode()

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Value of one sample from a fresh scrape (None if absent)."""
        for family in text_string_to_metric_families(self.scrape()):
            for s in family.samples:
                wanted = (labels or {}).items()
                if s.name == name and all(s.labels.get(k) == v for k, v in wanted):
                    return float(s.value)
        return None

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts the JSONL sink has written whole: a line the agent is still writing
        (no newline yet) is left for the next read."""
        if not self.alerts_path.exists():
            return []
        text = self.alerts_path.read_text()
        return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 15.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited while waiting for {what}:\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.logs()}")

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def base_config(workdir: Path, port: int) -> dict[str, Any]:
    return {
        "agent": {"state_dir": str(workdir / "state"), "log_level": "info"},
        "metrics": {"port": port},
        "host_metrics": {"interval_seconds": 1.0},
        "sinks": {"jsonl": {"path": str(workdir / "alerts.jsonl"), "fsync": "never"}},
        "detection": {"watch_rules": False},
        # passive capture on the host's own interfaces adds nothing to these tests; lab tests
        # that need it turn it on inside their own namespaces
        "capture": {"enabled": False},
    }


@pytest.fixture
def server() -> Iterator[Any]:
    """The wire-faithful fake Elasticsearch (tests/es_server) on loopback for one test."""
    from tests.es_server import FakeElasticsearch  # noqa: PLC0415 - only the ES tests need it

    srv = FakeElasticsearch().start()
    yield srv
    srv.stop()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Build (not start) agents; ``agent_factory({"inputs": {...}})`` merges into the base."""
    made: list[AgentProcess] = []

    def make(overrides: dict[str, Any] | None = None, **kwargs: Any) -> AgentProcess:
        workdir = tmp_path / f"agent{len(made)}"
        workdir.mkdir()
        port = free_port()
        agent = AgentProcess(workdir, deep_merge(base_config(workdir, port), overrides or {}),
                             port, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.kill()
