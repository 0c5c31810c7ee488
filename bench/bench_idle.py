"""Agent idle cost: CPU seconds and peak RSS of `vedette run` on default config over 60 s,
scraped every second, side by side with Debian's prometheus-node-exporter scraped the same way;
then again with 1,000 extra processes on the host.

Targets (issue 2): host collection ≤ 1 % of one core with 1,000 processes (measured per collector
in bench_host); whole agent < 100 MB RSS at rest — reported with and without the mapped
AF_PACKET ring, which RSS counts although it is a kernel packet buffer (like `tcpdump -B`).
``BENCH_IDLE_SECONDS`` shortens the window for a quick look.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from bench.common import BenchResult

REPO = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _ring_rss_mb(pid: int) -> float:
    """Resident size of AF_PACKET ring mappings (``socket:[…]`` in smaps): kernel packet buffers
    that RSS counts because they are mapped into the agent, like ``tcpdump -B``."""
    total = 0
    ring = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and not line.startswith(("Rss", "Pss")):
            ring = "socket:[" in line
        elif ring and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total / 1024


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _measure(pid: int, url: str) -> tuple[float, float, float]:
    """Scrape every second for SECONDS; return (% of one core, peak RSS MB, ring RSS MB)."""
    before = _cpu_seconds(pid)
    started = time.monotonic()
    while time.monotonic() - started < SECONDS:
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))
    elapsed = time.monotonic() - started
    cpu = 100 * (_cpu_seconds(pid) - before) / elapsed
    return cpu, _peak_rss_mb(pid), _ring_rss_mb(pid)


def _agent(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {
        "agent": {"state_dir": str(workdir / "state")},
        "metrics": {"port": port},
        "sinks": {"jsonl": {"path": str(workdir / "alerts.jsonl")}},
    }
    path = workdir / "vedette.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    _wait_http(url)
    time.sleep(2)  # let start-up work settle
    return proc, url


def _node_exporter() -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("prometheus-node-exporter")
    if binary is None:
        return None
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    _wait_http(url)
    return proc, url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run() -> BenchResult:
    result = BenchResult("idle")
    result.context["seconds"] = SECONDS
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("", 0), ("_1000_procs", 1000)):
            sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(extra)]
            try:
                agent, url = _agent(Path(tmp) / f"a{extra}")
                try:
                    cpu, rss, ring = _measure(agent.pid, url)
                finally:
                    _stop(agent)
                result.add(
                    f"vedette_cpu_pct{label}",
                    cpu,
                    "% of one core",
                    note="whole agent: host collectors, capture, detection, 1 s scrapes",
                )
                result.add(
                    f"vedette_peak_rss{label}",
                    rss,
                    "MB",
                    note=f"includes {ring:.0f} MB of mapped AF_PACKET ring",
                )
                result.add(
                    f"vedette_peak_rss_without_ring{label}",
                    rss - ring,
                    "MB",
                    "<= 100",
                    note="peak RSS minus the kernel packet ring (capture.ring_blocks)",
                )
                exporter = _node_exporter()
                if exporter is not None:
                    proc, nurl = exporter
                    try:
                        ncpu, nrss, _ = _measure(proc.pid, nurl)
                    finally:
                        _stop(proc)
                    result.add(f"node_exporter_cpu_pct{label}", ncpu, "% of one core")
                    result.add(f"node_exporter_peak_rss{label}", nrss, "MB")
                else:
                    result.context["node_exporter"] = "prometheus-node-exporter not installed"
            finally:
                for s in sleepers:
                    s.kill()
                for s in sleepers:
                    s.wait()
    return result
