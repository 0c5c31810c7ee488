"""Run a real tool between lab namespaces; compare the live agent's alerts with a replay's.

One :class:`ToolLab` per test module: the namespace lab (``lab.py``) with IPv6 addresses from
2001:db8::/32 added, a ``vedette run`` capturing inside the target namespace (``AgentProcess``
from tests/conftest.py, started through ``ip netns exec``) and an empty nftables table in the
target that :meth:`ToolLab.firewall` fills to make a source's probes go unanswered.

:meth:`ToolLab.record` runs one tool while ``tcpdump -n -U -w`` captures the target's side of
that tool's traffic (``host ADDRESS``), stops the capture by PID, and returns a :class:`Run`:
the pcap, and :meth:`Run.compare` waits (bounded) until the live agent has raised what a
``vedette replay --json`` of that pcap raises, then returns both as sets of
``(rule name, source.ip, destination.ip)`` restricted to alerts naming the tool's address — the
same capture seen live and offline must give the same result.

Every process is started by :meth:`Lab.spawn` (own process group) and ended by PID; the
namespaces and the agent go in :meth:`ToolLab.down`, also after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import AgentProcess, free_port
from tests.network.lab import ADDRESSES, Lab

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
RULES = REPO / "rules" / "network"
TGT, ATK = ADDRESSES["tgt"], ADDRESSES["atk"]
TGT6, ATK6 = "2001:db8:16::10", "2001:db8:16::20"
TOOLS = ("nmap", "tcpdump", "nft")
Summary = set[tuple[str, str, str]]


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def rule_names() -> dict[str, str]:
    """Rule id → name of every rule in rules/network."""
    return {doc["id"]: doc["name"] for path in RULES.glob("*.yml")
            for doc in yaml.safe_load_all(path.read_text())}


NAMES = rule_names()


def summarise(docs: list[dict[str, Any]], address: str) -> Summary:
    """``(rule name, source.ip, destination.ip)`` of the alerts naming ``address``."""
    out = set()
    for doc in docs:
        src = doc.get("source", {}).get("ip", "")
        dst = doc.get("destination", {}).get("ip", "")
        if address in (src, dst):
            out.add((NAMES.get(doc["rule"]["id"], doc["rule"]["id"]), src, dst))
    return out


@dataclass
class Run:
    lab: ToolLab
    pcap: Path
    address: str

    def replay(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [PYTHON, "-m", "agent.cli", "replay", "--json", "--config", str(self.lab.config_path),
             "--rules", str(RULES), str(self.pcap)],
            capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    def compare(self, timeout: float = 10.0) -> tuple[Summary, Summary]:
        """(live, replayed) alert summaries, once live has everything replay has (or time out).

        Technique: every alert of both sides must carry ATT&CK T1046 or its own technique;
        callers check the ones they expect."""
        offline = self.replay()
        replayed = summarise(offline, self.address)
        deadline = time.monotonic() + timeout
        live = summarise(self.lab.agent.alerts(), self.address)
        while not replayed <= live and time.monotonic() < deadline:
            time.sleep(0.2)
            live = summarise(self.lab.agent.alerts(), self.address)
        return live, replayed

    def techniques(self, rule: str) -> set[str]:
        """ATT&CK technique ids of the live alerts of ``rule`` naming the address."""
        out: set[str] = set()
        for doc in self.lab.agent.alerts():
            if NAMES.get(doc["rule"]["id"]) == rule and self.address in (
                    doc.get("source", {}).get("ip"), doc.get("destination", {}).get("ip")):
                out.update(doc.get("threat", {}).get("technique", {}).get("id", []))
        return out


class ToolLab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.lab = Lab(workdir)
        self.agent: AgentProcess
        self.config_path = workdir / "vedette.yaml"
        self.runs = 0

    def up(self, sources: list[str]) -> ToolLab:
        """The lab, ``sources`` as secondary addresses of the attacker, IPv6, nftables, agent."""
        lab = self.lab.up()
        for address in sources:
            lab.run("atk", "ip", "addr", "add", f"{address}/24", "dev", "e0", check=True)
        for role, address in (("tgt", TGT6), ("atk", ATK6)):
            lab.run(role, "ip", "-6", "addr", "add", f"{address}/64", "dev", "e0", "nodad",
                    check=True)
        lab.run("tgt", "nft", "add table inet vdlab", check=True)
        lab.run("tgt", "nft", "add chain inet vdlab input { type filter hook input priority 0 ; "
                "policy accept ; }", check=True)
        port = free_port()
        config = {
            "agent": {"state_dir": str(self.workdir / "state"), "log_level": "info"},
            "metrics": {"port": port},
            "host_metrics": {"enabled": False}, "process": {"enabled": False},
            "sockets": {"enabled": False}, "auth_logs": {"enabled": False},
            "web_logs": {"enabled": False}, "fim": {"enabled": False},
            "kernel_modules": {"enabled": False}, "auditd": {"enabled": False},
            "sinks": {"jsonl": {"path": str(self.workdir / "alerts.jsonl"), "fsync": "always"}},
            "detection": {"shipped_rules": False, "rule_paths": [str(RULES)],
                          "watch_rules": False},
            "network": {"local_networks": ["198.18.0.0/24", "2001:db8:16::/64"]},
        }
        self.agent = AgentProcess(self.workdir, config, port,
                                  command_prefix=lab.cmd("tgt"))
        self.agent.write_config()
        self.agent.start(wait=False)
        self.agent.wait_for(lambda: "capturing interface=e0" in self.agent.logs(), 60,
                            "capture on e0")
        return self

    def down(self) -> None:
        try:
            if getattr(self, "agent", None) is not None and self.agent.proc is not None:
                self.agent.stop()
        finally:
            self.lab.down()

    def firewall(self, address: str) -> None:
        """The target silently drops everything from ``address`` (probes only on the wire)."""
        family = "ip6" if ":" in address else "ip"
        self.lab.run("tgt", "nft", f"add rule inet vdlab input {family} saddr {address} drop",
                     check=True)

    @contextlib.contextmanager
    def capture(self, address: str, settle: float = 1.0) -> Iterator[Run]:
        """``tcpdump -n -U -w`` of ``address``'s traffic on the target's side while the block
        runs; stopped by PID ``settle`` seconds after it."""
        self.runs += 1
        pcap = self.workdir / f"run{self.runs}.pcap"
        log = self.workdir / f"tcpdump{self.runs}.log"
        dump = self.lab.spawn("tgt", "tcpdump", "-n", "-U", "-i", "e0", "-w", str(pcap),
                              "host", address, log=log.name)
        try:
            deadline = time.monotonic() + 10
            while "listening on" not in log.read_text(errors="replace"):
                assert dump.poll() is None and time.monotonic() < deadline, \
                    log.read_text(errors="replace")
                time.sleep(0.05)
            yield Run(self, pcap, address)
            time.sleep(settle)
        finally:
            self.lab.stop(dump)
        assert pcap.exists() and pcap.stat().st_size > 24, log.read_text(errors="replace")

    def record(self, address: str, *argv: str, role: str = "atk", timeout: float = 90,
               settle: float = 1.0) -> Run:
        """Run ``argv`` in ``role`` (bounded by ``timeout``) inside :meth:`capture`."""
        with self.capture(address, settle) as run:
            tool = self.lab.spawn(role, "timeout", str(int(timeout)), *argv,
                                  log=f"tool{self.runs}.log")
            try:
                tool.wait(timeout + 10)
            finally:
                self.lab.stop(tool)
        return run

    def sshd(self) -> Path:
        """sshd on the target (key login only); returns the folder with the client key."""
        keys = self.workdir / "ssh"
        keys.mkdir(exist_ok=True)
        for name in ("host", "user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(keys / name)], check=True, timeout=30)
        (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
        os.chmod(keys / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        self.lab.spawn("tgt", shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-p", "22",
                       "-h", str(keys / "host"),
                       "-o", f"AuthorizedKeysFile={keys / 'authorized_keys'}",
                       "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "StrictModes=no",
                       "-o", "PermitRootLogin=prohibit-password", "-o", f"ListenAddress={TGT}",
                       log="sshd.log")
        return keys
