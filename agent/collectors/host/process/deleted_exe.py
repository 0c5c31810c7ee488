"""Programs still running after their executable was deleted (``/proc/<pid>/exe`` `` (deleted)``).

Malware commonly deletes its binary once started, so a check at exec time alone never sees it.
:class:`DeletedExecutableCollector` is a polling collector: every ``interval_seconds`` it reads
the ``exe`` link of each process (one ``readlink`` per process) and reports, once per process
(pid + start time), a ``vedette``/``process_state`` event with ``event.action``
``executable_deleted``. ``vedette.process.executable_replaced`` says whether a file exists at
the path again — the mark of a package upgrade that replaced a running daemon's binary, not of
a dropper — and ``vedette.process.memfd`` whether the program runs from an anonymous memory file
(``memfd_create``: fileless execution). The first run reports what it finds too: a binary
deleted before the agent started is still worth knowing.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.collectors.host.process.procfs import ProcInfo, ProcReader
from agent.events import Event, LogSource, format_timestamp

PROCESS_STATE = LogSource("vedette", "process_state")
SUFFIX = " (deleted)"
_SEEN = 16_384


class DeletedExecutableCollector:
    name = "deleted_executables"

    def __init__(self, interval_seconds: float = 10.0, proc_root: Path = Path("/proc"),
                 host_name: str = "", clock: Callable[[], float] = time.time,
                 fs_root: Path = Path("/")) -> None:
        self.interval_seconds = interval_seconds
        self._root = str(proc_root)
        self._reader = ProcReader(proc_root)
        self._host = host_name
        self._clock = clock
        self._seen: OrderedDict[tuple[int, int | None], None] = OrderedDict()
        self._self = os.getpid()
        self._fs = str(fs_root)

    def collect(self) -> list[Event]:
        now = self._clock()
        out: list[Event] = []
        for pid in self._reader.pids():
            if pid == self._self:
                continue
            try:
                exe = os.readlink(f"{self._root}/{pid}/exe")
            except OSError:
                continue  # kernel thread, gone, or not ours to read
            if not exe.endswith(SUFFIX):
                continue
            info = self._reader.read(pid, full=True)
            key = (pid, info.start_ticks)
            if key in self._seen:
                continue
            self._seen[key] = None
            if len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
            path = exe[: -len(SUFFIX)]
            out.append(Event(now, PROCESS_STATE, self._fields(info, path)))
        return out

    def _fields(self, info: ProcInfo, path: str) -> dict[str, Any]:
        f: dict[str, Any] = {
            "event.kind": "event", "event.category": "process", "event.type": "info",
            "event.action": "executable_deleted", "event.dataset": "vedette.process",
            "process.pid": info.pid, "process.executable": path,
            "process.name": os.path.basename(path) if path else info.comm,
            "vedette.process.memfd": path.startswith("/memfd:"),
            "vedette.process.executable_replaced": not path.startswith("/memfd:")
            and os.path.exists(os.path.join(self._fs, path.lstrip("/"))),
        }
        if info.args:
            f["process.args"] = info.args
            f["process.command_line"] = " ".join(info.args)
        if info.ppid is not None:
            f["process.parent.pid"] = info.ppid
        if info.uid is not None:
            f["user.id"] = str(info.uid)
            name = self._reader.user_name(info.uid)
            if name:
                f["user.name"] = name
        start = self._reader.start_time(info)
        if start is not None:
            f["process.start"] = format_timestamp(start)
        if self._host:
            f["host.name"] = self._host
        return f
