"""Fallback when the proc connector is unavailable: find new processes by polling ``/proc``.

Each :meth:`ProcessPoller.poll` lists the pid directories and compares (pid, start time) with
the previous run; the first run only records the baseline. Processes that start and exit
between two polls are never seen, which is why the collector reports this mode as degraded
coverage (``vedette_collector_degraded{collector="process"} 1``).
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.collectors.host.process.procfs import ProcInfo, ProcReader


class ProcessPoller:
    def __init__(self, reader: ProcReader, proc_root: Path = Path("/proc")) -> None:
        self._reader = reader
        self._root = proc_root
        self._known: dict[int, int | None] = {}
        self._primed = False

    def poll(self) -> list[ProcInfo]:
        """Processes that appeared since the previous call (none on the first call)."""
        try:
            pids = [int(e.name) for e in os.scandir(self._root)
                    if e.name.isascii() and e.name.isdigit()]
        except OSError:
            return []
        current: dict[int, int | None] = {}
        new: list[ProcInfo] = []
        for pid in pids:
            ticks = _start_ticks(self._root, pid)
            if ticks is None:
                continue  # exited while we listed
            current[pid] = ticks
            if self._primed and self._known.get(pid, -1) != ticks:
                info = self._reader.read(pid)
                if not info.gone:
                    new.append(info)
        self._known = current
        self._primed = True
        return new


def _start_ticks(root: Path, pid: int) -> int | None:
    try:
        with open(f"{root}/{pid}/stat", "rb") as fh:
            stat = fh.read(2048)
    except OSError:
        return None
    rest = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None
