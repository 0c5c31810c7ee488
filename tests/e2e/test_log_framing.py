"""The running daemon: forged journal entries and escape tricks neither frame nor hide."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, AgentProcess

pytestmark = pytest.mark.e2e

ONLY = {"process": {"enabled": False}, "sockets": {"enabled": False},
        "fim": {"enabled": False}, "web_logs": {"enabled": False},
        "auditd": {"enabled": False}, "kernel_modules": {"enabled": False},
        "host_metrics": {"enabled": False}}
INNOCENT, ATTACKER = "198.18.7.7", "198.18.7.8"


NAMES = {doc["id"]: doc.get("name", "") for path in (REPO / "rules" / "auth").glob("*.yml")
         for doc in yaml.safe_load_all(path.read_text()) if doc}


def _names(agent: AgentProcess) -> list[tuple[str, dict[str, object]]]:
    """(rule name, group) of every alert written so far."""
    return [(NAMES.get(a["rule"]["id"], a["rule"]["id"]), a["vedette"]["group"])
            for a in agent.alerts()]


def _fake_journalctl(tmp_path: Path) -> Path:
    """Eight `logger -t sshd` forgeries by uid 1000 blaming INNOCENT, as journalctl shows them."""
    now = int(time.time() * 1e6)
    entries = [{"__REALTIME_TIMESTAMP": str(now + i * 1000), "__CURSOR": f"s=x;i={i}",
                "_HOSTNAME": "web1", "SYSLOG_IDENTIFIER": "sshd", "SYSLOG_PID": "812",
                "_PID": str(4242 + i), "_UID": "1000", "_GID": "1000", "_COMM": "logger",
                "_EXE": "/usr/bin/logger", "_TRANSPORT": "syslog", "SYSLOG_FACILITY": "10",
                "MESSAGE": f"Failed password for root from {INNOCENT} port {40000 + i} ssh2"}
               for i in range(8)]
    script = tmp_path / "journalctl"
    lines = "".join(json.dumps(e) + "\n" for e in entries)
    script.write_text(f"#!{sys.executable}\nimport sys, time\n"
                      f"sys.stdout.write({lines!r})\nsys.stdout.flush()\ntime.sleep(60)\n")
    script.chmod(0o755)
    return script


def test_forged_journal_entries_raise_log_forgery_not_a_brute_force(agent_factory,
                                                                    tmp_path: Path) -> None:
    agent: AgentProcess = agent_factory({**ONLY, "auth_logs": {
        "paths": [], "journal": "on", "journalctl": str(_fake_journalctl(tmp_path))}}).start()
    agent.wait_for(lambda: any(n == "log_forgery" for n, _ in _names(agent)),
                   what="log_forgery alert")
    agent.wait_for(lambda: agent.sample("vedette_input_errors_total",
                                        {"source": "journal", "reason": "forged"}) == 8,
                   what="eight forgeries counted")
    assert (agent.sample("vedette_logins_total", {"outcome": "failure"}) or 0) == 0
    assert agent.stop() == 0
    names = _names(agent)
    assert ("log_forgery", {"vedette.log.claimed_program": "sshd", "user.id": "1000"}) in names
    assert not [g for n, g in names if n.startswith("ssh_")], names


def test_escape_in_a_user_name_blames_the_real_source(agent_factory, tmp_path: Path) -> None:
    auth = tmp_path / "auth.log"
    auth.write_bytes(b"")
    agent: AgentProcess = agent_factory({**ONLY, "auth_logs": {
        "paths": [str(auth)], "journal": "off", "start_at_end": False,
        "poll_interval_seconds": 0.1}}).start()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with auth.open("ab") as fh:
        for i in range(6):  # framing attempt: the user name carries an unterminated OSC
            fh.write(f"{stamp} web1 sshd[9]: Failed password for root from {INNOCENT} port 22"
                     f"\x1b] from {ATTACKER} port {50000 + i} ssh2\n".encode())
        for i in range(6):  # hiding attempt: a CSI start before the trusted suffix
            fh.write(f"{stamp} web1 sshd[9]: Failed password for admin\x1b[ from 198.18.7.9 "
                     f"port {51000 + i} ssh2\n".encode())
    agent.wait_for(lambda: len([n for n, _ in _names(agent) if n == "ssh_bruteforce"]) == 2,
                   what="two brute-force alerts")
    assert agent.stop() == 0
    groups = [g for n, g in _names(agent) if n == "ssh_bruteforce"]
    assert sorted(g["source.ip"] for g in groups) == [ATTACKER, "198.18.7.9"]  # type: ignore[type-var]
