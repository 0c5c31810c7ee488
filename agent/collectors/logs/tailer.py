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
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent.durable import write_durably

log = logging.getLogger(__name__)


class OffsetStore:
    """``{key: {"inode": int, "offset": int}}`` in one JSON file, written atomically.

    A file that exists but cannot be used (unreadable, not JSON, not the expected shape, an
    entry without an integer inode and offset) is **damaged**: it is moved aside to
    ``NAME.refused``, ``on_problem`` is called with ``positions_damaged`` or
    ``positions_unreadable`` (the daemon counts it in ``vedette_checkpoint_problems_total``)
    and one error is logged. Its positions are lost, but no line is: while the store is
    :attr:`damaged`, a tailer without a position starts at the beginning of its file even with
    ``start_at_end`` (lines read again are duplicates with the same alert ids, never a loss).
    """

    def __init__(self, path: Path | None,
                 on_problem: Callable[[str], None] | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, int]] = {}
        self._saved = ""
        self.damaged = False
        if path is not None:
            self._load(path, on_problem)

    def _load(self, path: Path, on_problem: Callable[[str], None] | None) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # EIO, EACCES, not UTF-8
            reason = "positions_damaged" if isinstance(exc, ValueError) else \
                "positions_unreadable"
            self._refuse(path, reason, str(exc), on_problem)
            return
        try:
            loaded = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested
            self._refuse(path, "positions_damaged", f"not JSON: {exc}", on_problem)
            return
        valid = isinstance(loaded, dict) and all(
            isinstance(v, dict) and type(v.get("inode")) is int
            and type(v.get("offset")) is int and v["offset"] >= 0
            for v in loaded.values())
        if not valid:
            self._refuse(path, "positions_damaged", "not a positions file", on_problem)
            return
        self._data = {k: {"inode": v["inode"], "offset": v["offset"]}
                      for k, v in loaded.items()}
        self._saved = json.dumps(self._data, sort_keys=True)

    def _refuse(self, path: Path, reason: str, detail: str,
                on_problem: Callable[[str], None] | None) -> None:
        self.damaged = True
        try:
            os.replace(path, path.with_name(path.name + ".refused"))
        except OSError:
            pass
        log.error("%s: source positions refused (%s: %s); the files it named are read again "
                  "from their start", path, reason, detail[:200])
        if on_problem is not None:
            on_problem(reason)

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
        self._cut_at = 0  # where the line being discarded starts

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
        if (st is not None and st.st_ino != self._inode
                and self._file.tell() >= os.fstat(self._file.fileno()).st_size):
            # rotated by rename and the old file drained (a backlog larger than one read
            # is read on the next calls first); switch to the new one
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
            handle: IO[bytes] = self.path.open("rb")
        except OSError:
            return False
        st = os.fstat(handle.fileno())
        self._file, self._inode, self._partial = handle, st.st_ino, b""
        self._discarding = False  # a new file (or reopen) never starts inside a cut line
        saved = None if fresh else self._offsets.get(self._key)
        if saved is not None and saved[0] != st.st_ino:
            rotated = _rotated_sibling(self.path, saved[0], saved[1])
            if rotated is not None:
                # rotated by rename while the agent was down: finish the old file from the
                # saved position first; read() then sees the new inode and switches to it
                handle.close()
                handle, st = rotated, os.fstat(rotated.fileno())
                self._file, self._inode = handle, st.st_ino
        if saved is not None and saved[0] == st.st_ino:
            offset = saved[1]
            if offset > st.st_size or not _line_ends_before(handle, offset):
                # shrunk, or truncated and written again past the offset while the agent
                # was down (a saved position always follows a newline): start again at 0
                result.shrunk = True
                offset = 0
            handle.seek(offset)
        elif saved is None and self._start_at_end and not fresh and not self._offsets.damaged:
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
                # the position stays at the cut line's start until its newline: a restart
                # then resumes after a newline (a duplicate of the cut line), never mid-line
                self._cut_at = self._file.tell() - len(self._partial)
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
            offset = (self._cut_at if self._discarding
                      else max(0, self._file.tell() - len(self._partial)))
            self._position = (self._inode, offset)
            if self._remember_in_store:
                self._offsets.set(self._key, self._inode, offset)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _line_ends_before(handle: IO[bytes], offset: int) -> bool:
    """The byte before ``offset`` is a newline (or ``offset`` is 0). A saved position is the
    first byte after a returned line, so anything else means the content changed under it
    (copytruncate and new writes while the agent was down). A position is never inside a cut
    over-long line: it stays at that line's start until the line's newline is read."""
    if offset == 0:
        return True
    try:
        handle.seek(offset - 1)
        return handle.read(1) == b"\n"
    except OSError:
        return False


def _rotated_sibling(path: Path, inode: int, offset: int) -> IO[bytes] | None:
    """The file beside ``path`` that a rename rotation made of the saved inode (``auth.log.1``,
    ``auth.log-20261207``; not a compressed one), opened, or None. Only uncompressed siblings
    whose name starts with the log's name are candidates, and only one at least ``offset``
    bytes long."""
    try:
        names = [entry for entry in os.scandir(path.parent)
                 if entry.name.startswith(path.name) and entry.name != path.name
                 and not entry.name.endswith((".gz", ".xz", ".bz2", ".zst", ".tmp"))]
    except OSError:
        return None
    for entry in names:
        try:
            if entry.inode() != inode or not entry.is_file(follow_symlinks=False):
                continue
            handle = open(entry.path, "rb")  # noqa: SIM115 - the tailer owns and closes it
        except OSError:
            continue
        st = os.fstat(handle.fileno())
        if st.st_ino == inode and st.st_size >= offset:
            return handle
        handle.close()
    return None
