"""One agent per state dir: an exclusive ``flock`` on ``STATE_DIR/vedette.lock``.

Two ``vedette run`` on one state dir would tail the same logs into the same positions files,
overwrite each other's detection checkpoint (positions of one, windows of the other) and ship
the same spool twice. The second one refuses to start instead (exit 3, "busy", like a taken
metrics port: a retry may succeed once the other stops), naming the pid that holds the lock.
The lock is the kernel's: it goes with the process, so a ``kill -9`` leaves no stale lock
behind (the file stays, unlocked).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import AgentError

NAME = "vedette.lock"


class StateDirBusy(AgentError):
    """Another agent holds the state dir's lock."""


class StateLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def lock_state_dir(state_dir: Path) -> StateLock:
    """Take the state dir's lock or raise :class:`StateDirBusy`."""
    state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = state_dir / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusy(f"{state_dir}: another vedette (pid {holder}) runs on this state "
                           "dir; two would overwrite each other's positions and checkpoint"
                           ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(fd)
