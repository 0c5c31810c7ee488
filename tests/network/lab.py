"""A throw-away network lab: namespaces on one bridge, 198.18.0.0/24, no route out.

Namespaces (names carry a per-run prefix so parallel runs never collide)::

    gw   198.18.0.1   default gateway of tgt; blackholes 198.19.0.0/16; runs the lab DNS server
    tgt  198.18.0.10  the monitored server: the agent captures on its interface ``e0``
    atk  198.18.0.20  the attacker (nmap, hping3, arpspoof, iodined)
    cli  198.18.0.30  a benign client

The bridge lives in its own namespace, so nothing is added to the host's network. Each
namespace gets ``/etc/netns/<name>/resolv.conf`` pointing at the lab resolver. Every process is
started through :meth:`Lab.spawn` and stopped by PID in :meth:`Lab.down`, which also deletes
the namespaces and the resolv.conf directories — even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

ADDRESSES = {"gw": "198.18.0.1", "tgt": "198.18.0.10", "atk": "198.18.0.20",
             "cli": "198.18.0.30"}
TOOLS = ("ip", "nmap", "hping3", "arpspoof", "iodine", "iodined", "curl", "sshd", "ssh",
         "ssh-keygen")
NETNS_ETC = Path("/etc/netns")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"vd{os.getpid() % 100000}"
        self.bridge_ns = f"{self.prefix}-br"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.created: list[str] = []

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    # ------------------------------------------------------------------ plumbing

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)

    def up(self) -> Lab:
        self._ip("netns", "add", self.bridge_ns)
        self.created.append(self.bridge_ns)
        self._ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for role, address in ADDRESSES.items():
            self.add_host(role, address)
        self._ip("-n", self.ns("tgt"), "route", "add", "default", "via", ADDRESSES["gw"])
        self._ip("-n", self.ns("gw"), "route", "add", "blackhole", "198.19.0.0/16")
        return self

    def add_host(self, role: str, address: str) -> None:
        """One more namespace ``role`` on the bridge with its own card (``e0``, its own MAC)
        and ``address``/24 (after :meth:`up`: e.g. real hosts whose addresses a test borrows)."""
        name = self.ns(role)
        self._ip("netns", "add", name)
        self.created.append(name)
        peer = f"p{role}"
        self._ip("-n", self.bridge_ns, "link", "add", peer, "type", "veth", "peer", "name",
                 "e0", "netns", name)
        self._ip("-n", self.bridge_ns, "link", "set", peer, "master", "br0", "up")
        self._ip("-n", name, "addr", "add", f"{address}/24", "dev", "e0")
        self._ip("-n", name, "link", "set", "e0", "up")
        self._ip("-n", name, "link", "set", "lo", "up")
        etc = NETNS_ETC / name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {ADDRESSES['gw']}\n")

    def down(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)

    # ------------------------------------------------------------------ processes

    def cmd(self, role: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def run(self, role: str, *argv: str, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(role, *argv), capture_output=True, text=True,
                              timeout=timeout, check=check)

    def spawn(self, role: str, *argv: str, log: str | None = None) -> subprocess.Popen[bytes]:
        """Start a background process in its own process group (killed in :meth:`down`)."""
        out = (self.workdir / log).open("ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(self.cmd(role, *argv), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
