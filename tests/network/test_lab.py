"""Real attack tools against a real agent capturing inside a namespace lab (see lab.py).

One lab and one ``vedette run`` (inside the target namespace, rules/network only) serve the
whole module. Benign traffic runs first and must raise nothing; then each attack must raise its
alert within 5 s of starting. Attacks use distinct source addresses (secondary addresses of the
attacker namespace) so every alert is a new group, not an update of an earlier one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.network.lab import ADDRESSES, Lab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
TGT, GW, ATK, CLI = (ADDRESSES[r] for r in ("tgt", "gw", "atk", "cli"))
DEADLINE = 5.0
INTEL_NET = "198.19.66.0/24"

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)


def _rule_ids() -> dict[str, str]:
    ids = {}
    for path in (REPO / "rules" / "network").glob("*.yml"):
        for doc in yaml.safe_load_all(path.read_text()):
            ids[doc["name"]] = doc["id"]
    return ids


RULE_IDS = _rule_ids()


class Agent:
    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.alerts_path = workdir / "alerts.jsonl"
        self.latencies: list[tuple[str, float]] = []
        feed = workdir / "intel.netset"
        feed.write_text(f"# lab blocklist\n{INTEL_NET}\n")
        config = {
            "agent": {"state_dir": str(workdir / "state"), "log_level": "info"},
            "metrics": {"port": 9787},
            "host_metrics": {"enabled": False}, "process": {"enabled": False},
            "sockets": {"enabled": False}, "auth_logs": {"enabled": False},
            "web_logs": {"enabled": False}, "fim": {"enabled": False},
            "kernel_modules": {"enabled": False}, "auditd": {"enabled": False},
            "sinks": {"jsonl": {"path": str(self.alerts_path), "fsync": "always"}},
            "detection": {"shipped_rules": False,
                          "rule_paths": [str(REPO / "rules" / "network")],
                          "watch_rules": False},
            "capture": {"rescan_seconds": 1.0},
            "network": {"local_networks": ["198.18.0.0/24"]},
            "threat_intel": {"files": [str(feed)]},
        }
        (workdir / "vedette.yaml").write_text(yaml.safe_dump(config))
        self.proc = lab.spawn("tgt", PYTHON, "-m", "agent.cli", "run", "--config",
                              str(workdir / "vedette.yaml"), log="agent.log")

    def log(self) -> str:
        return (self.workdir / "agent.log").read_text(errors="replace")

    def wait_capturing(self, interface: str = "e0", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"capturing interface={interface}" in self.log():
                return
            assert self.proc.poll() is None, self.log()
            time.sleep(0.1)
        raise AssertionError(f"agent not capturing on {interface}:\n{self.log()[-3000:]}")

    def alerts(self) -> list[dict[str, Any]]:
        if not self.alerts_path.exists():
            return []
        text = self.alerts_path.read_text()  # whole lines only: the agent may be mid-write
        return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()
                if line.strip()]

    def wait_alert(self, rule: str | tuple[str, ...], started: float,
                   match: Callable[[dict[str, Any]], bool] = lambda d: True,
                   timeout: float = DEADLINE) -> tuple[dict[str, Any], float]:
        """The first alert document of ``rule`` matching ``match``; (doc, seconds taken)."""
        wanted = {RULE_IDS[r] for r in ((rule,) if isinstance(rule, str) else rule)}
        while True:
            for doc in self.alerts():
                if doc["rule"]["id"] in wanted and match(doc):
                    took = time.monotonic() - started
                    self.latencies.append((doc["rule"]["name"], took))
                    return doc, took
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                seen = sorted({d["rule"]["name"] for d in self.alerts()})
                raise AssertionError(f"no {rule} alert within {timeout} s (alerts so far: "
                                     f"{seen})\n{self.log()[-2000:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("lab")
    lab = Lab(workdir)
    try:
        lab.up()
        for i in range(41, 50):  # per-attack source addresses
            lab.run("atk", "ip", "addr", "add", f"198.18.0.{i}/24", "dev", "e0", check=True)
        lab.spawn("gw", PYTHON, "-m", "tests.network.labdns", GW, log="dns.log")
        lab.spawn("tgt", PYTHON, "-m", "http.server", "8080", "--bind", TGT, log="http.log")
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Iterator[Agent]:
    agent = Agent(lab, lab.workdir)
    agent.wait_capturing()
    time.sleep(0.5)
    yield agent
    report = "\n".join(f"{took:6.2f} s  {name}" for name, took in agent.latencies)
    print(f"\nattack → alert latencies:\n{report}")


def _sshd(lab: Lab) -> Path:
    keys = lab.workdir / "ssh"
    keys.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")],
                   check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user")],
                   check=True)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    os.chmod(keys / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(exist_ok=True)
    lab.spawn("tgt", shutil.which("sshd") or "sshd", "-D", "-e", "-p", "22",
              "-h", str(keys / "host"), "-o", f"AuthorizedKeysFile={keys / 'authorized_keys'}",
              "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "StrictModes=no",
              "-o", "PermitRootLogin=prohibit-password", "-o", f"ListenAddress={TGT}",
              log="sshd.log")
    return keys


def test_benign_traffic_raises_nothing(lab: Lab, agent: Agent) -> None:
    keys = _sshd(lab)
    time.sleep(0.5)
    for _ in range(10):
        assert lab.run("cli", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       f"http://{TGT}:8080/").stdout == "200"
    lookup = ("import socket\nfor n in ('www.lab.test', 'api.lab.test', 'db.lab.test'):\n"
              "    print(socket.gethostbyname(n))\n"
              "try:\n    socket.gethostbyname('missing.example.org')\nexcept OSError:\n    pass\n")
    assert "198.18.0.1" in lab.run("tgt", PYTHON, "-c", lookup).stdout
    lab.run("tgt", "hping3", "--icmp", "-c", "3", "-i", "u200000", GW)
    lab.run("cli", "hping3", "--icmp", "-c", "3", "-i", "u200000", TGT)
    ssh = lab.run("cli", "ssh", "-i", str(keys / "user"), "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                  f"root@{TGT}", "true", timeout=30)
    assert ssh.returncode == 0, ssh.stderr + (lab.workdir / "sshd.log").read_text()
    time.sleep(3)
    assert agent.alerts() == []
    assert agent.proc.poll() is None


class Tool:
    """An attack tool running in the background while the test polls for the alert.

    Latency is measured from the tool's start, not from its exit: nmap and hping3 keep waiting
    for answers (or sleeping between packets) long after the packets that matter are out.
    """

    def __init__(self, lab: Lab, role: str, *argv: str) -> None:
        self.lab = lab
        self.proc = lab.spawn(role, "timeout", "60", *argv)

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.lab.stop(self.proc)


def _nmap(lab: Lab, *args: str, role: str = "atk") -> Tool:
    return Tool(lab, role, "nmap", "-n", "-Pn", "--max-retries", "1", *args)


@pytest.mark.parametrize(
    ("flag", "source", "rule"),
    [
        ("-sS", "198.18.0.41", "port_scan_vertical"),
        ("-sF", "198.18.0.42", "tcp_stealth_scan"),
        ("-sX", "198.18.0.43", "tcp_stealth_scan"),
        ("-sN", "198.18.0.44", "tcp_stealth_scan"),
    ],
)
def test_raw_tcp_scans(lab: Lab, agent: Agent, flag: str, source: str, rule: str) -> None:
    started = time.monotonic()
    with _nmap(lab, flag, "-S", source, "-e", "e0", "-p", "1-200", TGT):
        doc, took = agent.wait_alert(rule, started, lambda d: d["source"]["ip"] == source)
    assert doc["destination"]["ip"] == TGT and took < DEADLINE


def test_syn_scan_in_8_byte_fragments(lab: Lab, agent: Agent) -> None:
    """nmap -f: every probe in 8-byte IP fragments; reassembled, they are SYNs of a scan."""
    started = time.monotonic()
    source = "198.18.0.48"
    with _nmap(lab, "-sS", "-f", "-S", source, "-e", "e0", "-p", "1-200", TGT):
        doc, took = agent.wait_alert("port_scan_vertical", started,
                                     lambda d: d["source"]["ip"] == source)
    assert doc["destination"]["ip"] == TGT and took < DEADLINE


def test_connect_scan(lab: Lab, agent: Agent) -> None:
    started = time.monotonic()
    with _nmap(lab, "-sT", "-p", "1-200", TGT):
        agent.wait_alert("port_scan_vertical", started, lambda d: d["source"]["ip"] == ATK)
        agent.wait_alert("tcp_closed_port_resets", started,
                         lambda d: d["source"]["ip"] == ATK and d["destination"]["ip"] == TGT)


def test_slow_scan_nmap_t2(lab: Lab, agent: Agent) -> None:
    """nmap -T2 (one probe per 0.4 s): the 15-minute rule fires once 40 ports are probed.

    Inherently slower than the 5 s of the other attacks: the alert can only come after the 40th
    probe, about 16 s in.
    """
    started = time.monotonic()
    proc = lab.spawn("atk", "nmap", "-n", "-Pn", "-T2", "-sS", "-S", "198.18.0.47", "-e", "e0",
                     "--max-retries", "0", "-p", "1000-1045", TGT)
    try:
        _, took = agent.wait_alert("port_scan_slow", started,
                                   lambda d: d["source"]["ip"] == "198.18.0.47", timeout=30)
    finally:
        lab.stop(proc)
    assert 14 < took < 30


def test_udp_scan(lab: Lab, agent: Agent) -> None:
    started = time.monotonic()
    with _nmap(lab, "-sU", "-S", "198.18.0.45", "-e", "e0", "-p", "100-130", TGT):
        agent.wait_alert("udp_scan", started,
                         lambda d: d["destination"]["ip"] == "198.18.0.45")


def test_ping_sweep(lab: Lab, agent: Agent) -> None:
    started = time.monotonic()
    with Tool(lab, "atk", "nmap", "-n", "-sn", "198.18.0.100-160"):
        agent.wait_alert("arp_sweep", started, lambda d: True)


def _flood(lab: Lab, *args: str) -> subprocess.Popen[bytes]:
    return lab.spawn("atk", "timeout", "8", "hping3", "-q", *args, TGT)


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("-S", "-p", "80", "-i", "u100", "-c", "30000"), "syn_flood"),
        (("-S", "-p", "81", "--rand-source", "-i", "u100", "-c", "30000"),
         "spoofed_source_flood"),
        (("--icmp", "-i", "u100", "-c", "30000"), "icmp_flood"),
        (("--udp", "-p", "9999", "-i", "u50", "-c", "60000"), "udp_flood"),
    ],
)
def test_floods(lab: Lab, agent: Agent, args: tuple[str, ...], rule: str) -> None:
    started = time.monotonic()
    proc = _flood(lab, *args)
    try:
        _, took = agent.wait_alert(rule, started, lambda d: d["destination"]["ip"] == TGT)
    finally:
        lab.stop(proc)
    assert took < DEADLINE
    time.sleep(1)  # let the target settle before the next flood


def test_login_port_connection_rate_bruteforce(lab: Lab, agent: Agent) -> None:
    """RDP by connection rate (SSH is judged by its authentication: test_lab_ssh.py)."""
    started = time.monotonic()
    with Tool(lab, "atk", "hping3", "-q", "-S", "-p", "3389", "-a", "198.18.0.46", "-c", "30",
              "-i", "u30000", TGT):
        agent.wait_alert("login_port_bruteforce", started,
                         lambda d: d["source"]["ip"] == "198.18.0.46")


def test_arp_spoofing_of_the_gateway(lab: Lab, agent: Agent) -> None:
    lab.run("tgt", "hping3", "--icmp", "-c", "1", GW)  # the real gateway answers ARP first
    time.sleep(0.3)
    started = time.monotonic()
    proc = lab.spawn("atk", "arpspoof", "-i", "e0", "-t", TGT, GW, log="arpspoof.log")
    try:
        doc, _ = agent.wait_alert("arp_gateway_mac_change", started)
    finally:
        lab.stop(proc)
    assert "arp_gateway_mac_change" in RULE_IDS and doc["rule"]["name"].startswith("ARP")


def test_outbound_horizontal_scan_mining_and_threat_intel(lab: Lab, agent: Agent) -> None:
    started = time.monotonic()
    with _nmap(lab, "-sS", "-p", "445", "198.19.0.1-40", role="tgt"):
        agent.wait_alert("port_scan_horizontal", started, lambda d: d["source"]["ip"] == TGT)
    started = time.monotonic()
    with Tool(lab, "tgt", "hping3", "-q", "-S", "-p", "3333", "-c", "2", "198.19.1.1"):
        agent.wait_alert("mining_pool_port", started)
    started = time.monotonic()
    with Tool(lab, "tgt", "hping3", "-q", "-S", "-p", "443", "-c", "2", "198.19.66.6"):
        doc, _ = agent.wait_alert("threat_intel_match", started)
    assert doc["destination"]["ip"] == "198.19.66.6"


def test_iodine_dns_tunnel(lab: Lab, agent: Agent) -> None:
    if not Path("/dev/net/tun").exists():
        pytest.skip("no /dev/net/tun: iodine cannot create its tunnel")
    lab.spawn("atk", "iodined", "-f", "-c", "-P", "vedette-lab", "198.19.53.1",
              "t.tunnel.test", log="iodined.log")
    time.sleep(0.5)
    started = time.monotonic()
    lab.spawn("tgt", "iodine", "-f", "-r", "-m", "1024", "-P", "vedette-lab", ATK,
              "t.tunnel.test", log="iodine.log")
    log = lab.workdir / "iodine.log"
    while "setup complete" not in log.read_text(errors="replace"):
        assert time.monotonic() - started < DEADLINE, log.read_text(errors="replace")
        time.sleep(0.05)
    # Data through the tunnel: every packet becomes a query with an encoded, random label.
    lab.spawn("tgt", "hping3", "-q", "--icmp", "-d", "300", "-i", "u20000", "-c", "200",
              "198.19.53.1")
    rules = ("dns_tunnel_long_names", "dns_tunnel_txt_null", "dns_tunnel_volume")
    try:
        agent.wait_alert(rules, started, timeout=DEADLINE)
        agent.wait_alert("dns_tunnel_long_names", started, timeout=DEADLINE + 3)
    except AssertionError as exc:
        tail = log.read_text(errors="replace")[-1500:]
        raise AssertionError(f"{exc}\niodine log:\n{tail}") from None
    # The tunnel's interface appeared after start: the agent picks it up (capture.rescan_seconds).
    agent.wait_capturing("dns0", timeout=5)


def test_zone_transfer_attempt_over_tcp(lab: Lab, agent: Agent) -> None:
    """nmap's dns-zone-transfer script from the monitored server against the lab's name server
    (which refuses): the AXFR question travels over TCP and is read from the stream."""
    started = time.monotonic()
    with Tool(lab, "tgt", "nmap", "-n", "-Pn", "-sT", "-p", "53", "--script",
              "dns-zone-transfer", "--script-args", "dns-zone-transfer.domain=lab.test", GW):
        doc, _ = agent.wait_alert("dns_zone_transfer", started)
    assert doc["source"]["ip"] == TGT


def test_capture_metrics_are_exported(lab: Lab, agent: Agent) -> None:
    """After the attacks: packets by protocol/direction, kernel counters, no address labels."""
    deadline = time.monotonic() + 15  # one capture.health_interval_seconds at most
    text = ""
    while time.monotonic() < deadline:
        text = lab.run("tgt", "curl", "-s", "http://127.0.0.1:9787/metrics").stdout
        if 'vedette_capture_packets_total{direction="inbound",protocol="tcp"}' in text \
                and "vedette_capture_ring_packets_total" in text:
            break
        time.sleep(0.5)
    assert 'vedette_capture_packets_total{direction="inbound",protocol="tcp"}' in text
    assert 'vedette_capture_ring_packets_total{interface="e0"}' in text
    assert 'vedette_capture_interfaces' in text
    assert "vedette_capture_events_over_budget_total" in text
    for line in text.splitlines():
        if line.startswith("vedette_capture") and "{" in line:
            assert "198.18." not in line and "198.19." not in line, line
