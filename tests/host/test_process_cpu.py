"""Per-process CPU sampling: busy processes reported with the age of their executable."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from agent.collectors.host.process.cpu import ProcessCpuCollector


def _proc(root: Path, pid: int, ticks: int, exe: str, start: int = 100) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 6 + [str(start)]
    (d / "stat").write_text(f"{pid} (miner x) " + " ".join(fields) + "\n")
    (d / "cmdline").write_bytes(exe.encode() + b"\0-o\0pool\0")
    link = d / "exe"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(exe)


def test_busy_new_executable_is_reported(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    hz = os.sysconf("SC_CLK_TCK")
    now, mono = [1000.0], [0.0]
    _proc(proc, 10, 0, "/usr/sbin/mysqld")
    known = tmp_path / "known.json"
    collector = ProcessCpuCollector(30, threshold=0.8, proc_root=proc, known_file=known,
                                    clock=lambda: now[0], monotonic=lambda: mono[0])
    assert collector.collect() == []  # first sample, baseline of known executables
    now[0] += 3600
    mono[0] += 30
    _proc(proc, 10, int(30 * hz * 0.95), "/usr/sbin/mysqld")  # busy, known for an hour
    _proc(proc, 20, 0, "/tmp/.x/kworker")  # new process, first sample
    assert [e.get("process.executable") for e in collector.collect()] == ["/usr/sbin/mysqld"]
    now[0] += 30
    mono[0] += 30
    _proc(proc, 10, int(30 * hz * 0.95) + 1, "/usr/sbin/mysqld")  # idle now
    _proc(proc, 20, int(30 * hz * 1.9), "/tmp/.x/kworker")  # two cores
    (event,) = collector.collect()
    f = event.fields
    assert event.logsource == ("vedette", "process_cpu", None)
    assert (f["process.pid"], f["process.name"], f["process.executable"]) == (
        20, "miner x", "/tmp/.x/kworker")
    assert abs(f["process.cpu.pct"] - 1.9) < 0.05
    assert f["vedette.process.executable_age"] == 30
    assert f["process.command_line"] == "/tmp/.x/kworker -o pool"
    # the known executables survive a restart
    again = ProcessCpuCollector(30, proc_root=proc, known_file=known, clock=lambda: now[0])
    assert again._known["/usr/sbin/mysqld"] == 1000.0


def test_real_busy_process(tmp_path: Path) -> None:
    collector = ProcessCpuCollector(1, threshold=0.2)
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        collector.collect()
        time.sleep(1.5)
        events = [e for e in collector.collect() if e.get("process.pid") == busy.pid]
    finally:
        busy.kill()
        busy.wait()
    assert len(events) == 1 and events[0].get("process.cpu.pct") >= 0.2


def test_busy_newcomer_is_reported_at_its_first_sample(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    hz = os.sysconf("SC_CLK_TCK")
    now, mono = [1000.0], [0.0]
    collector = ProcessCpuCollector(30, threshold=0.8, proc_root=proc,
                                    clock=lambda: now[0], monotonic=lambda: mono[0])
    (proc / "uptime").write_text("500.00 900.00\n")
    assert collector.collect() == []
    now[0] += 30
    mono[0] += 30
    (proc / "uptime").write_text("530.00 900.00\n")
    started = (530 - 20) * hz  # started 20 s ago
    _proc(proc, 30, int(20 * hz * 0.97), "/tmp/.x/xmr", start=started)  # busy since start
    _proc(proc, 31, int(20 * hz * 0.10), "/usr/bin/make", start=started)
    _proc(proc, 32, int(3 * hz), "/tmp/.x/fresh", start=(530 - 3) * hz)  # too young to judge
    (event,) = collector.collect()
    assert event.get("process.executable") == "/tmp/.x/xmr"
    assert event.get("vedette.process.age_seconds") == 20
    assert abs(event.get("process.cpu.pct") - 0.97) < 0.05
