"""The facts that relate one exec to another: download targets, scripts, stdin programs."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.collectors.host.process.deleted_exe import DeletedExecutableCollector
from agent.collectors.host.process.download_args import download_path
from agent.collectors.host.process.procfs import (
    ProcInfo,
    interactive_shell,
    script_path,
    stdin_program,
)


@pytest.mark.parametrize(("args", "cwd", "want"), [
    (["wget", "-O", "/tmp/x", "http://198.18.0.1/x"], "/root", "/tmp/x"),
    (["wget", "-q", "--output-document=/dev/shm/k", "u"], "/", "/dev/shm/k"),
    (["wget", "http://h/p/y"], "/var/tmp", "/var/tmp/y"),
    (["wget", "-P", "/tmp/d", "http://h/z.sh"], "/", "/tmp/d/z.sh"),
    (["wget", "http://h/"], "/tmp", "/tmp/index.html"),
    (["wget", "-qO-", "http://h/p.py"], "/tmp", None),
    (["curl", "-s", "-o", "/tmp/.x", "http://h/x"], "/", "/tmp/.x"),
    (["curl", "-so", "/tmp/q", "http://h/q"], "/", "/tmp/q"),
    (["curl", "--output=rel", "http://h/q"], "/tmp/a", "/tmp/a/rel"),
    (["curl", "-o", "../z", "u"], "/tmp/a", "/tmp/z"),
    (["curl", "-sO", "http://h/a/b.sh?x=1"], "/tmp", "/tmp/b.sh"),
    (["curl", "-s", "http://h/x.sh"], "/tmp", None),
    (["curl", "-o", "rel", "u"], None, None),
    (["ls", "-o", "/tmp/x"], "/", None),
    ([], "/", None),
])
def test_download_path(args: list[str], cwd: str | None, want: str | None) -> None:
    assert download_path(args, cwd) == want


def _info(exe: str, *args: str, cwd: str = "/tmp/w") -> ProcInfo:
    return ProcInfo(1, executable=exe, args=list(args), cwd=cwd)


def test_script_path() -> None:
    assert script_path(_info("/usr/bin/dash", "/bin/sh", "/tmp/x")) == "/tmp/x"
    assert script_path(_info("/usr/bin/bash", "bash", "-e", "run.sh")) == "/tmp/w/run.sh"
    assert script_path(_info("/usr/bin/python3.11", "python3", "./a/../b.py")) == "/tmp/w/b.py"
    assert script_path(_info("/usr/bin/dash", "sh", "-c", "/tmp/x")) is None
    assert script_path(_info("/usr/bin/python3.11", "python3", "-m", "http.server")) is None
    assert script_path(_info("/usr/bin/ls", "ls", "/tmp")) is None
    assert script_path(_info("/usr/bin/dash", "sh")) is None


def test_stdin_program() -> None:
    assert stdin_program(_info("/usr/bin/dash", "sh")) is True
    assert stdin_program(_info("/usr/bin/bash", "bash", "-s", "--")) is True
    assert stdin_program(_info("/usr/bin/dash", "sh", "-c", "id")) is False
    assert stdin_program(_info("/usr/bin/python3.11", "python3")) is True
    assert stdin_program(_info("/usr/bin/perl", "perl", "-")) is True
    assert stdin_program(_info("/usr/bin/python3.11", "python3", "-c", "x")) is False
    assert stdin_program(_info("/usr/bin/python3.11", "python3", "x.py")) is False
    assert stdin_program(_info("/usr/bin/jq", "jq", ".")) is None


def test_interactive_shell() -> None:
    assert interactive_shell(["sh"]) and interactive_shell(["bash", "-i"])
    assert interactive_shell(["bash", "--login"])
    assert not interactive_shell(["sh", "-c", "x"]) and not interactive_shell(["sh", "-ec"])
    assert not interactive_shell(["sh", "x.sh"]) and not interactive_shell([])


def test_deleted_executable_is_reported_once_and_replacement_is_told(tmp_path: Path) -> None:
    gone, kept = tmp_path / "gone", tmp_path / "kept"
    shutil.copy("/bin/sleep", gone)
    shutil.copy("/bin/sleep", kept)
    procs = [subprocess.Popen([str(p), "30"]) for p in (gone, kept)]
    try:
        time.sleep(0.2)
        gone.unlink()
        kept.unlink()
        shutil.copy("/bin/sleep", kept)  # an upgrade put a new file at the path
        collector = DeletedExecutableCollector()
        events = {e.get("process.pid"): e for e in collector.collect()}
        first, second = events[procs[0].pid], events[procs[1].pid]
        assert first.get("process.executable") == str(gone)
        assert first.get("vedette.process.executable_replaced") is False
        assert second.get("vedette.process.executable_replaced") is True
        assert first.get("process.args") == [str(gone), "30"]
        assert not [e for e in collector.collect() if e.get("process.pid") == procs[0].pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_build_output() -> None:
    from agent.collectors.host.process.download_args import build_output  # noqa: PLC0415

    assert build_output(["gcc", "-O2", "-o", "hello", "hello.c"], "/tmp/b") == "/tmp/b/hello"
    assert build_output(["/usr/lib/gcc/x86_64-linux-gnu/12/collect2", "-ohello"], "/t") == \
        "/t/hello"
    assert build_output(["go", "build", "-o", "/tmp/x"], "/") == "/tmp/x"
    assert build_output(["curl", "-o", "/tmp/x"], "/") is None
