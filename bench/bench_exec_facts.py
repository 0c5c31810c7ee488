"""Exec facts: how many of 10,000 short-lived ``sh -c 'true …'`` execs reach an event with the
full argv and the executable, at what CPU cost and latency — audit records vs proc connector.

Each run starts the production process collector in this process (no daemon) and a shell that
forks and execs ``sh -c "true vedette-bench-<run>-<i>"`` 10,000 times; every such process lives
for about a millisecond. An exec counts as covered when its event carries
``process.executable`` = the shell and ``process.args`` = the three arguments exactly. Modes:

* ``audit``: exec facts from the kernel's audit records
  (:mod:`agent.collectors.host.process.audit_netlink`);
  latency = publish time - the audit record's kernel timestamp (millisecond resolution);
* ``connector``: proc connector + ``/proc`` read (the fallback), for comparison.

CPU per exec is the collector thread's own CPU time (``pthread_getcpuclockid``) over the run
divided by the execs it handled (the machine's other execs included); the kernel's cost of
auditing shows up as the driver's wall time (``exec_loop_seconds``). Five runs per mode; the
median is reported with min and max. Needs root (otherwise skipped).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry

from agent.collectors.host.process.audit_netlink import AuditSocket
from agent.collectors.host.process.collector import ProcessExecCollector
from agent.collectors.host.process.procfs import ProcReader
from agent.events import Event
from agent.metrics import AgentMetrics
from bench.common import BenchResult

EXECS = 10_000
RUNS = 5


class _Run:
    def __init__(self, audit: bool, tag: str) -> None:
        self.tag = tag
        self.lock = threading.Lock()
        self.events: list[tuple[float, Event]] = []
        self.handled = 0
        self.stop = threading.Event()
        self.collector = ProcessExecCollector(
            ProcReader(), AgentMetrics(CollectorRegistry()), fallback=False,
            kernel_facts=AuditSocket if audit else None)
        self.thread = threading.Thread(target=self.collector.run, args=(self._publish, self.stop))

    def _publish(self, events: list[Event]) -> int:
        now = time.time()
        with self.lock:
            self.handled += len(events)
            self.events.extend((now, e) for e in events
                               if self.tag in " ".join(e.fields.get("process.args") or ()))
        return len(events)

    def execute(self, shell: str) -> dict[str, float]:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.collector.mode == "starting" and time.monotonic() < deadline:
            time.sleep(0.01)
        ident = self.thread.ident
        assert ident is not None
        clock = time.pthread_getcpuclockid(ident)
        cpu0 = time.clock_gettime(clock)
        t0 = time.monotonic()
        script = f'i=0; while [ $i -lt {EXECS} ]; do i=$((i+1)); sh -c "true {self.tag}-$i"; done'
        subprocess.run([shell, "-c", script], check=True)
        loop = time.monotonic() - t0
        want = {f"true {self.tag}-{i}" for i in range(1, EXECS + 1)}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= EXECS:
                    break
            time.sleep(0.2)
        time.sleep(0.5)
        cpu = time.clock_gettime(clock) - cpu0
        self.stop.set()
        self.thread.join(10)
        real_sh = os.path.realpath(shell)
        covered: set[str] = set()
        latencies: list[float] = []
        for published, event in self.events:
            args = event.fields.get("process.args")
            if (isinstance(args, list) and len(args) == 3 and args[:2] == ["sh", "-c"]
                    and args[2] in want
                    and event.fields.get("process.executable") == real_sh):
                covered.add(args[2])
                latencies.append((published - event.timestamp) * 1000)
        latencies.sort()
        return {
            "coverage": len(covered) / EXECS * 100,
            "cpu_per_exec_us": cpu / max(1, self.handled) * 1e6,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
            "loop_s": loop,
            "mode_ok": float(self.collector.mode == ("audit" if "audit" in self.tag
                                                     else "connector")),
        }


def _spread(values: list[float]) -> str:
    return f"median of {len(values)} runs; min {min(values):.4g}, max {max(values):.4g}"


def run() -> BenchResult:
    result = BenchResult("exec_facts")
    result.context = {"execs_per_run": EXECS, "runs": RUNS, "cpus": os.cpu_count(),
                      "workload": "sh -c 'true <marker>' forked+exec'd in a loop by dash"}
    if os.geteuid() != 0:
        result.context["skipped"] = "needs root (audit netlink and proc connector)"
        return result
    shell = shutil.which("sh") or "/bin/sh"
    runs: dict[str, list[dict[str, float]]] = {"audit": [], "connector": []}
    for n in range(RUNS):
        for mode in ("audit", "connector"):
            runs[mode].append(_Run(mode == "audit", f"vb{os.getpid()}{mode}{n}").execute(shell))
    for mode, rows in runs.items():
        series: dict[str, list[Any]] = {k: [r[k] for r in rows] for k in rows[0]}
        if min(series["mode_ok"]) < 1:
            result.context[f"{mode}_unavailable"] = True
            continue
        target = ">= 99.9" if mode == "audit" else ""
        result.add(f"{mode}_exec_coverage", statistics.median(series["coverage"]), "%", target,
                   note=f"execs with full argv + executable; {_spread(series['coverage'])}")
        result.add(f"{mode}_cpu_per_exec", statistics.median(series["cpu_per_exec_us"]), "µs",
                   note=f"collector thread CPU / events; {_spread(series['cpu_per_exec_us'])}")
        if mode == "audit":
            result.add("audit_exec_latency_p99", statistics.median(series["p99_ms"]), "ms",
                       "<= 100", note=f"kernel record time → published; "
                                      f"{_spread(series['p99_ms'])}")
        result.add(f"{mode}_exec_loop_seconds", statistics.median(series["loop_s"]), "s",
                   note=f"wall time of the {EXECS} execs (kernel audit cost shows here); "
                        f"{_spread(series['loop_s'])}")
    return result
