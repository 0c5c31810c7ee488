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

A miner that runs for a minute or two can finish between two 30 s samples, so with
``young_interval_seconds`` (5 s by default in the daemon) the collector also looks, between full
samples, at the processes that were *not* there at the previous full sample — only those, so
a fast tick is one directory listing plus one small read per new process. A new process at
least 5 s old whose share since it started is at or above the threshold is reported at once
(once per process; the full samples go on reporting it while it stays busy).

For the few busy processes reported, the event also says where the process is connected to
(``vedette.process.remote.ip`` / ``.port``: its established or connecting TCP sockets, from its
own network namespace's table), so a rule can combine "busy from its start" with "talks to a
stratum port" — evidence a renamed miner with its pool in a config file still gives away.

``vedette.process.executable_age`` is the time since the executable was first seen by the agent
*or* since the file's inode last changed (``ctime``, which the owner cannot set back), whichever
is longer: ``/usr/bin/gzip`` installed months ago is not new the first time the agent sees it
busy; a file dropped a minute ago is new under both clocks.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.collectors.host.sockets import parse_proc_net
from agent.events import Event, LogSource

PROCESS_CPU = LogSource("vedette", "process_cpu")
MAX_KNOWN = 50_000
MIN_AGE = 5.0
MAX_FDS = 1024  # fds looked at per busy process for its connections
MAX_REMOTES = 16
_CONNECTED = frozenset({"01", "02", "08"})  # ESTABLISHED, SYN_SENT, CLOSE_WAIT


class ProcessCpuCollector:
    name = "process_cpu"

    def __init__(self, interval_seconds: float = 30.0, *, threshold: float = 0.8,
                 proc_root: Path = Path("/proc"), known_file: Path | None = None,
                 host_name: str = "", clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 young_interval_seconds: float | None = None) -> None:
        self._full_interval = interval_seconds
        self._young_interval = (young_interval_seconds
                                if young_interval_seconds and young_interval_seconds
                                < interval_seconds else None)
        # the scheduler calls collect() this often; collect() decides full sample or fast tick
        self.interval_seconds = self._young_interval or interval_seconds
        self._young_reported: set[tuple[int, int]] = set()
        # judged by no full sample yet (too young at the last one, or started just before
        # the first one): the fast ticks look at these too
        self._unjudged: set[tuple[int, int]] = set()
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
        mono = self._monotonic()
        if (self._young_interval is not None and self._previous_at is not None
                and mono - self._previous_at < self._full_interval - self._young_interval / 2):
            return self._young()
        return self._full()

    def _young(self) -> list[Event]:
        """Fast tick: only processes absent from the last full sample, judged since start."""
        now = self._clock()
        uptime = _uptime(f"{self._proc}/uptime")
        if uptime is None:
            return []
        # processes of the last full sample were judged there, except those too young then
        known_pids = {key[0] for key in self._previous} - {key[0] for key in self._unjudged}
        events: list[Event] = []
        for pid in _pids(self._proc):
            if pid in known_pids:
                continue
            stat = _stat(self._proc, pid)
            if stat is None:
                continue
            ticks, start, comm = stat
            key = (pid, start)
            age = uptime - start / self._hz
            if key in self._young_reported or not MIN_AGE <= age <= self._full_interval * 2:
                continue
            share = ticks / self._hz / age
            if share >= self._threshold:
                self._young_reported.add(key)
                exe = _readlink(f"{self._proc}/{pid}/exe")
                self._remember(exe, now)
                events.append(self._event(now, pid, exe, comm, share, age))
        self._save()
        return events

    def _remember(self, exe: str | None, now: float) -> None:
        if exe and exe not in self._known and len(self._known) < MAX_KNOWN:
            self._known[exe] = now
            self._dirty = True

    def _full(self) -> list[Event]:
        now, mono = self._clock(), self._monotonic()
        current = self._ticks()
        events: list[Event] = []
        exes: dict[tuple[int, int], str | None] = {}
        for key in current:
            exe = self._exe_of.get(key)
            if key not in self._exe_of:
                exe = _readlink(f"{self._proc}/{key[0]}/exe")
            exes[key] = exe
            self._remember(exe, now)
        uptime = _uptime(f"{self._proc}/uptime")
        unjudged: set[tuple[int, int]] = set()
        if self._previous_at is not None and mono > self._previous_at:
            elapsed = mono - self._previous_at
            for key, (ticks, comm) in current.items():
                before = self._previous.get(key)
                age = uptime - key[1] / self._hz if uptime is not None else None
                if before is None:
                    # started since the last run: its share since it started, so a miner
                    # is seen at the first sample, not after 5 (age >= 5 s: no noise)
                    if age is not None and age < MIN_AGE:
                        unjudged.add(key)
                    if age is None or not MIN_AGE <= age <= elapsed + 1:
                        continue
                    share = ticks / self._hz / age
                else:
                    share = (ticks - before) / self._hz / elapsed
                if share >= self._threshold:
                    events.append(self._event(now, key[0], exes.get(key), comm, share, age))
        elif uptime is not None:  # the first sample judges nothing: the fast ticks judge the
            # processes started shortly before it (a miner started with the agent)
            unjudged = {key for key in current
                        if uptime - key[1] / self._hz < self._full_interval}
        self._previous = {k: v[0] for k, v in current.items()}
        self._previous_at = mono
        self._exe_of = exes
        self._young_reported &= current.keys()
        self._unjudged = unjudged
        self._save()
        return events

    def _ticks(self) -> dict[tuple[int, int], tuple[int, str]]:
        out: dict[tuple[int, int], tuple[int, str]] = {}
        for pid in _pids(self._proc):
            stat = _stat(self._proc, pid)
            if stat is not None:
                out[(pid, stat[1])] = (stat[0], stat[2])
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
            first = self._known.get(exe, now)
            try:  # the inode the process runs, even when the path was deleted or replaced
                first = min(first, os.stat(f"{self._proc}/{pid}/exe").st_ctime)
            except OSError:
                pass
            f["vedette.process.executable_age"] = max(0, int(now - first))
        args = _cmdline(f"{self._proc}/{pid}/cmdline")
        if args:
            f["process.command_line"] = " ".join(args)
        remotes = remote_endpoints(f"{self._proc}/{pid}")
        if remotes:
            f["vedette.process.remote.ip"] = sorted({ip for ip, _ in remotes})
            f["vedette.process.remote.port"] = sorted({port for _, port in remotes})
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


def remote_endpoints(base: str) -> list[tuple[str, int]]:
    """(remote ip, port) of the process's established, connecting or half-closed TCP sockets.

    Socket inodes from ``<base>/fd`` (at most :data:`MAX_FDS`), matched against the process's
    own network namespace's ``net/tcp`` and ``net/tcp6`` tables; at most :data:`MAX_REMOTES`.
    Only called for the few processes reported busy.
    """
    inodes: set[int] = set()
    try:
        with os.scandir(f"{base}/fd") as fds:
            for n, entry in enumerate(fds):
                if n >= MAX_FDS:
                    break
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and target.endswith("]"):
                    inodes.add(int(target[8:-1]))
    except (OSError, ValueError):
        return []
    if not inodes:
        return []
    out: list[tuple[str, int]] = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open(f"{base}/net/{table}", encoding="ascii", errors="replace") as fh:
                text = fh.read(4 << 20)
        except OSError:
            continue
        for sock in parse_proc_net(text, "tcp", v6, _CONNECTED):
            if sock.inode in inodes and len(out) < MAX_REMOTES:
                out.append((sock.remote_ip, sock.remote_port))
    return out


def _pids(proc: Path) -> list[int]:
    try:
        return [int(e.name) for e in os.scandir(proc) if e.name.isascii() and e.name.isdigit()]
    except OSError:
        return []


def _stat(proc: Path, pid: int) -> tuple[int, int, str] | None:
    """(user + system ticks, start time in ticks, comm) from ``/proc/<pid>/stat``."""
    try:  # os calls, not open(): half the CPU for a thousand small reads
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    head, _, rest = stat.rpartition(b")")
    fields = rest.split()
    try:
        ticks = int(fields[11]) + int(fields[12])
        start = int(fields[19])
    except (IndexError, ValueError):
        return None
    return ticks, start, head.partition(b"(")[2].decode("utf-8", "replace")


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
