"""Atomic, durable small-file writes for the agent's state (positions, cursors, checkpoints).

Write to ``NAME.tmp``, fsync it, rename it over ``NAME``, then fsync the directory: after a
power loss the file holds the previous or the new contents, never a torn mix, and a position
acknowledged after the call stays acknowledged.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically and durably; raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        # ENOSPC, EIO: the previous file stays; do not leave a partial copy taking space
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # a directory that cannot be opened: the rename itself is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
