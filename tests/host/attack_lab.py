"""What the attack end-to-end tests share: namespaces, started processes, alert look-ups.

The fixtures ``netns`` and ``procs`` are in tests/host/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, AgentProcess

ATTACKER, VICTIM = "198.18.0.1", "198.18.0.2"
LOW = 2  # event.severity of a low alert (agent/alerts.py LEVELS)


def _rule_ids() -> dict[str, str]:
    ids: dict[str, str] = {}
    for path in (REPO / "rules").rglob("*.yml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("name") and doc.get("id"):
                ids[doc["name"]] = doc["id"]
    return ids


RULE_IDS = _rule_ids()


def make_netns() -> Iterator[str]:
    """A network namespace with the attacker and victim addresses on its loopback."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    name = f"vdt-atk-{os.getpid() % 100000}{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["addr", "add", f"{ATTACKER}/32", "dev", "lo"],
                    ["addr", "add", f"{VICTIM}/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True, timeout=20)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


class Procs:
    """Processes started by a test, each in its own process group, stopped by PID."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self, *argv: str, ns: str | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def make_procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


def alerts_of(agent: AgentProcess, name: str, since: float = 0.0) -> list[dict[str, Any]]:
    """Alerts of a rule first seen at or after ``since``, less 50 ms: kernel audit times come
    from the kernel's coarse clock (``ktime_get_coarse_real_ts64``: up to one jiffy, 4-10 ms,
    behind ``time.time()``) and are truncated to the millisecond; 5 ms missed a real alert."""
    since -= 0.05
    out = []
    for a in agent.alerts():
        if a.get("rule", {}).get("id") != RULE_IDS[name]:
            continue
        if first_seen(a) >= since:
            out.append(a)
    return out


def first_seen(alert: dict[str, Any]) -> float:
    from datetime import datetime  # noqa: PLC0415

    raw = alert.get("event", {}).get("start") or alert.get("@timestamp", "")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def wait_alert(agent: AgentProcess, name: str, since: float, timeout: float = 15.0) -> None:
    agent.wait_for(lambda: bool(alerts_of(agent, name, since)), timeout, f"alert {name}")


def wait_relay(agent: AgentProcess, relay_pid: int, since: float) -> None:
    """The shell_socket_relay alert of the shell whose parent is ``relay_pid``."""
    agent.wait_for(lambda: any(a["vedette"]["group"].get("process.parent.pid") == relay_pid
                               for a in alerts_of(agent, "shell_socket_relay", since)),
                   15, f"shell_socket_relay for parent {relay_pid}")


def wait_port(ns: str | None, host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    cmd = ["ss", "-Hltn", f"src {host}:{port}"]
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, *cmd] if ns else cmd,
                             capture_output=True, text=True, timeout=10).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing}")


