"""Two agents on one state dir would overwrite each other's positions and checkpoint and ship
one spool twice: the second refuses to start (exit 3, busy); a kill -9 leaves no stale lock."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from agent.state_lock import lock_state_dir
from tests.conftest import AgentProcess


def test_a_second_agent_on_the_same_state_dir_refuses_to_start(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    state = tmp_path / "shared-state"
    first = agent_factory({"agent": {"state_dir": str(state)}}).start()
    second = agent_factory({"agent": {"state_dir": str(state)}})
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 3
    assert "another vedette" in second.logs() and str(first.proc.pid) in second.logs()
    assert first.proc.poll() is None  # the first runs on
    first.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # the kernel dropped the lock with the process: a restart takes it
    again = agent_factory({"agent": {"state_dir": str(state)}}).start()
    assert again.stop() == 0


def test_the_lock_is_released_and_taken_again(tmp_path: Path) -> None:
    lock = lock_state_dir(tmp_path / "state")
    lock.release()
    lock_state_dir(tmp_path / "state").release()
