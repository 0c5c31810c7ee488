"""Processes that keep a CPU busy, with how long their executable has been known.

Every ``interval_seconds`` the collector reads ``/proc/<pid>/stat`` of every process (one small
read each), computes each process's CPU use since the previous run (user + system ticks over
elapsed time, as a fraction of one core) and reports the processes at or above ``threshold``
as ``vedette``/``process_cpu`` events. Each event says how long ago this *executable* was first
seen by the agent (``vedette.process.executable_age``, seconds): executables running when the
agent first started, and every one seen since, are remembered in the state dir, so a miner
dropped yesterday is "new" while the database that has been running for months is not. A
process started since the previous run is judged by its share since it started (at least 5 s
old), so a busy newcomer is reported at the first sample; ``vedette.process.age_seconds`` says
how long the process has run.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.events import Event, LogSource

PROCESS_CPU = LogSource("vedette", "process_cpu")
MAX_KNOWN = 50_000
MIN_AGE = 5.0


class ProcessCpuCollector:
    name = "process_cpu"

    def __init__(self, interval_seconds: float = 30.0, *, threshold: float = 0.8,
                 proc_root: Path = Path("/proc"), known_file: Path | None = None,
                 host_name: str = "", clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds = interval_seconds
        self._threshold = threshold
        self._proc = proc_root
        self._known_file = known_file
        self._host = host_name
        self._clock = clock
        self._monotonic = monotonic
        try:
            self._hz = os.sysconf("SC_CLK_TCK")
        except (ValueError, OSError):
            self._hz = 100
        self._previous: dict[tuple[int, int], int] = {}
        self._previous_at: float | None = None
        self._known: dict[str, float] = self._load()
        self._dirty = False
        self._exe_of: dict[tuple[int, int], str | None] = {}

    def collect(self) -> list[Event]:
        now, mono = self._clock(), self._monotonic()
        current = self._ticks()
        events: list[Event] = []
        exes: dict[tuple[int, int], str | None] = {}
        for key in current:
            exe = self._exe_of.get(key)
            if key not in self._exe_of:
                exe = _readlink(f"{self._proc}/{key[0]}/exe")
            exes[key] = exe
            if exe and exe not in self._known and len(self._known) < MAX_KNOWN:
                self._known[exe] = now
                self._dirty = True
        uptime = _uptime(f"{self._proc}/uptime")
        if self._previous_at is not None and mono > self._previous_at:
            elapsed = mono - self._previous_at
            for key, (ticks, comm) in current.items():
                before = self._previous.get(key)
                age = uptime - key[1] / self._hz if uptime is not None else None
                if before is None:
                    # started since the last run: its share since it started, so a miner
                    # is seen at the first sample, not after 5 (age >= 5 s: no noise)
                    if age is None or not MIN_AGE <= age <= elapsed + 1:
                        continue
                    share = ticks / self._hz / age
                else:
                    share = (ticks - before) / self._hz / elapsed
                if share >= self._threshold:
                    events.append(self._event(now, key[0], exes.get(key), comm, share, age))
        self._previous = {k: v[0] for k, v in current.items()}
        self._previous_at = mono
        self._exe_of = exes
        self._save()
        return events

    def _ticks(self) -> dict[tuple[int, int], tuple[int, str]]:
        out: dict[tuple[int, int], tuple[int, str]] = {}
        try:
            pids = [e.name for e in os.scandir(self._proc) if e.name.isascii() and e.name.isdigit()]
        except OSError:
            return out
        for pid in pids:
            try:  # os calls, not open(): half the CPU for a thousand small reads
                fd = os.open(f"{self._proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                stat = os.read(fd, 1024)
            except OSError:
                continue
            finally:
                os.close(fd)
            head, _, rest = stat.rpartition(b")")
            fields = rest.split()
            try:
                ticks = int(fields[11]) + int(fields[12])
                start = int(fields[19])
            except (IndexError, ValueError):
                continue
            comm = head.partition(b"(")[2].decode("utf-8", "replace")
            out[(int(pid), start)] = (ticks, comm)
        return out

    def _event(self, now: float, pid: int, exe: str | None, comm: str, share: float,
               age: float | None = None) -> Event:
        f: dict[str, Any] = {
            "event.kind": "metric", "event.category": "process", "event.action": "cpu_busy",
            "event.dataset": "vedette.process_cpu", "process.pid": pid, "process.name": comm,
            "process.cpu.pct": round(share, 3),
        }
        if age is not None:
            f["vedette.process.age_seconds"] = int(age)
        if exe:
            f["process.executable"] = exe
            f["vedette.process.executable_age"] = int(now - self._known.get(exe, now))
        args = _cmdline(f"{self._proc}/{pid}/cmdline")
        if args:
            f["process.command_line"] = " ".join(args)
        try:  # only for the few busy processes, not for every process on every run
            uid: int | None = os.stat(f"{self._proc}/{pid}").st_uid
        except OSError:
            uid = None
        if uid is not None:
            f["user.id"] = str(uid)
            try:
                f["user.name"] = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                pass
        if self._host:
            f["host.name"] = self._host
        return Event(now, PROCESS_CPU, f)

    def _load(self) -> dict[str, float]:
        if self._known_file is None:
            return {}
        try:
            data = json.loads(self._known_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in list(data.items())[:MAX_KNOWN]
                if isinstance(v, int | float)}

    def _save(self) -> None:
        if self._known_file is None or not self._dirty:
            return
        self._dirty = False
        try:
            self._known_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._known_file.with_name(self._known_file.name + ".tmp")
            tmp.write_text(json.dumps(self._known), encoding="utf-8")
            os.replace(tmp, self._known_file)
        except OSError:
            pass


def _uptime(path: str) -> float | None:
    try:
        with open(path, "rb") as fh:
            return float(fh.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _readlink(path: str) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return target[: -len(" (deleted)")] if target.endswith(" (deleted)") else target


def _cmdline(path: str) -> list[str]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4096)
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0") if a]
