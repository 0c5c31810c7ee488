"""JSON-lines file sink: one ECS alert document per line, appended, rotated by size."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Literal

from agent.alerts import Alert, to_ecs
from agent.identity import Identity

FsyncPolicy = Literal["always", "interval", "never"]


class JsonlSink:
    """Appends alerts to ``path``; rotates to ``path.1`` … ``path.N`` past ``max_bytes``.

    ``fsync``: ``always`` syncs after every alert, ``interval`` on every :meth:`flush` (the
    daemon flushes each second), ``never`` leaves it to the kernel.
    """

    name = "jsonl"

    def __init__(
        self,
        path: Path,
        identity: Identity,
        fsync: FsyncPolicy = "interval",
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 5,
    ) -> None:
        self.path = path
        self._identity = identity
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._dirty = False

    def emit(self, alert: Alert) -> None:
        line = json.dumps(to_ecs(alert, self._identity), ensure_ascii=True, default=str) + "\n"
        with self._lock:
            handle = self._open()
            # Rotate before a write that would pass the limit, never right after it: with
            # backups=0 rotating afterwards deleted the alert that had just been written.
            if handle.tell() and handle.tell() + len(line) > self._max_bytes:
                self._rotate()
                handle = self._open()
            handle.write(line)
            handle.flush()
            self._dirty = True
            if self._fsync == "always":
                os.fsync(handle.fileno())
                self._dirty = False

    def flush(self) -> None:
        with self._lock:
            if self._file is not None and self._dirty:
                self._file.flush()
                if self._fsync != "never":
                    os.fsync(self._file.fileno())
                self._dirty = False

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self._file

    def _rotate(self) -> None:
        assert self._file is not None
        if self._fsync != "never":
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
