"""Follow growing files line by line, across rotation, truncation and agent restarts.

:class:`FileTailer` returns complete lines only (a partial last line waits for its newline),
detects rename rotation (the path now names another inode: the old file is read to its end,
then the new one from its start) and copytruncate (the file shrank below our offset: start
again at 0). Offsets are kept in an :class:`OffsetStore` in the state dir so a restart resumes
where the agent stopped; a file whose inode changed while the agent was down is read from its
start. Over-long lines are cut at ``max_line_bytes`` and reported, never buffered unboundedly.

With ``remember=False`` the tailer never writes the store itself: :meth:`FileTailer.position`
says where its reading stands, and the collector stores a position only once the pipeline has
acknowledged everything read before it (end-to-end acknowledgement, :mod:`agent.pipeline`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent.durable import write_durably


class OffsetStore:
    """``{key: {"inode": int, "offset": int}}`` in one JSON file, written atomically."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, int]] = {}
        self._saved = ""
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._data = {
                        k: v for k, v in loaded.items()
                        if isinstance(v, dict)
                        and isinstance(v.get("inode"), int)
                        and isinstance(v.get("offset"), int)
                    }
            except (OSError, ValueError):
                self._data = {}

    def get(self, key: str) -> tuple[int, int] | None:
        with self._lock:
            entry = self._data.get(key)
            return (int(entry["inode"]), int(entry["offset"])) if entry else None

    def set(self, key: str, inode: int, offset: int) -> None:
        with self._lock:
            self._data[key] = {"inode": inode, "offset": offset}

    def save(self) -> None:
        """Write atomically and durably (fsync of the file, then of the directory after the
        rename): a power loss leaves the previous or the new positions, never a torn file."""
        if self._path is None:
            return
        with self._lock:
            text = json.dumps(self._data, sort_keys=True)
            if text == self._saved:
                return
            write_durably(self._path, text)
            self._saved = text


@dataclass
class TailResult:
    lines: list[bytes]
    truncated_lines: int = 0  # lines longer than max_line_bytes (cut)
    rotated: bool = False
    shrunk: bool = False  # copytruncate or tampering: the file got smaller


class FileTailer:
    def __init__(
        self,
        path: Path,
        offsets: OffsetStore,
        *,
        key: str | None = None,
        start_at_end: bool = False,
        max_line_bytes: int = 64 * 1024,
        max_read_bytes: int = 8 * 1024 * 1024,
        remember: bool = True,
    ) -> None:
        self.path = path
        self.key = key or str(path)
        self._remember_in_store = remember
        self._position: tuple[int, int] | None = None
        self._offsets = offsets
        self._key = key or str(path)
        self._start_at_end = start_at_end
        self._max_line = max_line_bytes
        self._max_read = max_read_bytes
        self._file: IO[bytes] | None = None
        self._inode = -1
        self._partial = b""
        self._discarding = False  # inside an over-long line, skipping to its newline

    def read(self) -> TailResult:
        """Lines appended since the last call (bounded by ``max_read_bytes`` per call)."""
        result = TailResult([])
        if self._file is None and not self._open(result):
            return result
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        current = os.fstat(self._file.fileno())
        if current.st_size < self._file.tell():
            result.shrunk = True
            self._file.seek(0)
            self._partial = b""
            self._discarding = False
        self._consume(result)
        if st is not None and st.st_ino != self._inode:
            # rotated by rename: the old file is drained above; switch to the new one
            self._consume(result, final=True)
            self._close()
            result.rotated = True
            self._open(result, fresh=True)
            self._consume(result)
        self._remember()
        return result

    def close(self) -> None:
        self._remember()
        self._close()

    # ------------------------------------------------------------------ internals

    def _open(self, result: TailResult, fresh: bool = False) -> bool:
        try:
            handle = self.path.open("rb")
        except OSError:
            return False
        st = os.fstat(handle.fileno())
        self._file, self._inode, self._partial = handle, st.st_ino, b""
        self._discarding = False  # a new file (or reopen) never starts inside a cut line
        saved = None if fresh else self._offsets.get(self._key)
        if saved is not None and saved[0] == st.st_ino:
            offset = saved[1]
            if offset > st.st_size:
                result.shrunk = True
                offset = 0
            handle.seek(offset)
        elif saved is None and self._start_at_end and not fresh:
            handle.seek(0, os.SEEK_END)
        return True

    def _consume(self, result: TailResult, final: bool = False) -> None:
        assert self._file is not None
        data = self._file.read(self._max_read)
        if not data and not (final and self._partial):
            return
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if lines and self._discarding:
            self._discarding = False
            del lines[0]  # the end of a line already cut and returned
        if lines and max(map(len, lines)) > self._max_line:
            for i, line in enumerate(lines):
                if len(line) > self._max_line:
                    result.truncated_lines += 1
                    lines[i] = line[: self._max_line]
        result.lines.extend(lines)
        if len(self._partial) > self._max_line:
            if not self._discarding:
                result.lines.append(self._partial[: self._max_line])
                result.truncated_lines += 1
            self._discarding = True
            self._partial = b""
        if final and self._partial:
            result.lines.append(self._partial)
            self._partial = b""

    def position(self) -> tuple[int, int] | None:
        """``(inode, offset)`` of the first byte not yet returned as a line (None before the
        file was first opened)."""
        return self._position

    def _remember(self) -> None:
        if self._file is not None and not self._file.closed:
            offset = max(0, self._file.tell() - len(self._partial))
            self._position = (self._inode, offset)
            if self._remember_in_store:
                self._offsets.set(self._key, self._inode, offset)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
