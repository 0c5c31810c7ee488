"""Per-process CPU sampling: busy processes reported with the age of their executable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agent.collectors.host.process.cpu import ProcessCpuCollector, remote_endpoints


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


def test_fast_ticks_report_a_busy_newcomer_between_full_samples(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    hz = os.sysconf("SC_CLK_TCK")
    now, mono = [1000.0], [0.0]
    collector = ProcessCpuCollector(30, threshold=0.8, proc_root=proc, young_interval_seconds=5,
                                    clock=lambda: now[0], monotonic=lambda: mono[0])
    assert collector.interval_seconds == 5
    (proc / "uptime").write_text("500.00 900.00\n")
    _proc(proc, 10, 0, "/usr/sbin/mysqld", start=100)
    assert collector.collect() == []  # full sample: mysqld is known from now on
    # 5 s later: a fast tick; a process started 6 s ago busy since then, another idle
    now[0] += 5
    mono[0] += 5
    (proc / "uptime").write_text("505.00 900.00\n")
    started = (505 - 6) * hz
    _proc(proc, 10, 10**6, "/usr/sbin/mysqld", start=100)  # busy, but known: not looked at
    _proc(proc, 40, int(6 * hz * 0.95), "/tmp/.x/kswapd0", start=started)
    _proc(proc, 41, int(6 * hz * 0.05), "/usr/bin/vim", start=started)
    (event,) = collector.collect()
    assert event.get("process.pid") == 40 and event.get("vedette.process.age_seconds") == 6
    # reported once per process on fast ticks
    now[0] += 5
    mono[0] += 5
    (proc / "uptime").write_text("510.00 900.00\n")
    _proc(proc, 40, int(11 * hz * 0.95), "/tmp/.x/kswapd0", start=started)
    assert collector.collect() == []
    # the full sample (30 s after the previous one) goes on reporting it, and mysqld
    now[0] += 20
    mono[0] += 20
    (proc / "uptime").write_text("530.00 900.00\n")
    _proc(proc, 40, int(31 * hz * 0.95), "/tmp/.x/kswapd0", start=started)
    _proc(proc, 10, 10**6 + 30 * hz, "/usr/sbin/mysqld", start=100)
    assert sorted(e.get("process.pid") for e in collector.collect()) == [10, 40]


def test_fast_ticks_off_when_not_shorter_than_the_interval() -> None:
    assert ProcessCpuCollector(30, young_interval_seconds=30).interval_seconds == 30
    assert ProcessCpuCollector(30).interval_seconds == 30


def test_executable_age_is_the_older_of_first_seen_and_the_file_ctime(tmp_path: Path) -> None:
    """A long-installed program busy for the first time is not new; a fresh file is."""
    collector = ProcessCpuCollector(1, threshold=0.0)
    sleeper = subprocess.Popen(["sleep", "30"])
    fresh = tmp_path / "fresh-sleep"
    fresh.write_bytes(Path("/bin/sleep").read_bytes())
    fresh.chmod(0o755)
    dropped = subprocess.Popen([str(fresh), "30"])
    try:
        time.sleep(0.2)
        collector.collect()
        time.sleep(1.1)
        ages = {e.get("process.pid"): e.get("vedette.process.executable_age")
                for e in collector.collect() if e.get("process.pid") in (sleeper.pid, dropped.pid)}
    finally:
        for p in (sleeper, dropped):
            p.kill()
            p.wait()
    installed = time.time() - os.stat(os.path.realpath("/bin/sleep")).st_ctime
    assert ages[sleeper.pid] >= min(installed, 3600) - 5
    assert ages[dropped.pid] <= 10


def test_a_busy_process_says_where_it_is_connected(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = subprocess.Popen([sys.executable, "-c",
                               "import socket,sys,time\n"
                               f"s=socket.create_connection(('127.0.0.1',{port}))\n"
                               "print('up',flush=True)\n"
                               "end=time.time()+20\n"
                               "while time.time()<end: pass\n"], stdout=subprocess.PIPE)
    try:
        assert client.stdout is not None and client.stdout.readline() == b"up\n"
        endpoints = remote_endpoints(f"/proc/{client.pid}")
    finally:
        client.kill()
        client.wait()
        listener.close()
    assert ("127.0.0.1", port) in endpoints
    assert remote_endpoints(str(tmp_path / "no-such-process")) == []


def test_a_process_too_young_at_the_full_sample_is_judged_at_the_next_fast_tick(
        tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    hz = os.sysconf("SC_CLK_TCK")
    now, mono = [1000.0], [0.0]
    collector = ProcessCpuCollector(30, threshold=0.8, proc_root=proc, young_interval_seconds=5,
                                    clock=lambda: now[0], monotonic=lambda: mono[0])
    (proc / "uptime").write_text("500.00 900.00\n")
    assert collector.collect() == []
    now[0] += 30
    mono[0] += 30
    (proc / "uptime").write_text("530.00 900.00\n")
    started = (530 - 2) * hz  # 2 s old at the full sample: too young to judge there
    _proc(proc, 50, int(2 * hz), "/tmp/.x/worker", start=started)
    assert collector.collect() == []
    now[0] += 5
    mono[0] += 5
    (proc / "uptime").write_text("535.00 900.00\n")
    _proc(proc, 50, int(7 * hz * 0.97), "/tmp/.x/worker", start=started)
    (event,) = collector.collect()
    assert event.get("process.pid") == 50


def test_a_process_started_just_before_the_first_sample_is_judged_by_fast_ticks(
        tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    hz = os.sysconf("SC_CLK_TCK")
    now, mono = [1000.0], [0.0]
    collector = ProcessCpuCollector(30, threshold=0.8, proc_root=proc, young_interval_seconds=5,
                                    clock=lambda: now[0], monotonic=lambda: mono[0])
    (proc / "uptime").write_text("500.00 900.00\n")
    _proc(proc, 60, int(3 * hz), "/tmp/.x/worker", start=(500 - 3) * hz)
    _proc(proc, 61, int(400 * hz), "/usr/sbin/mysqld", start=100 * hz)  # busy, long running
    assert collector.collect() == []
    now[0] += 5
    mono[0] += 5
    (proc / "uptime").write_text("505.00 900.00\n")
    _proc(proc, 60, int(8 * hz * 0.95), "/tmp/.x/worker", start=(500 - 3) * hz)
    _proc(proc, 61, int(405 * hz), "/usr/sbin/mysqld", start=100 * hz)
    assert [e.get("process.pid") for e in collector.collect()] == [60]
