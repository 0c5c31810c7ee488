"""Shells under another name (agent/collectors/host/process/shell_copies.py) and ``busybox sh``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from agent.collectors.host.process.procfs import interactive_shell
from agent.collectors.host.process.shell_copies import ShellCopies


def _fake_shell(tmp_path: Path) -> Path:
    shell = tmp_path / "bin" / "dash"
    shell.parent.mkdir()
    shell.write_bytes(b"\x7fELF" + os.urandom(4096))
    return shell


def test_a_copy_under_another_name_is_a_shell(tmp_path: Path) -> None:
    shell = _fake_shell(tmp_path)
    copies = ShellCopies([str(shell), str(tmp_path / "missing")])
    copy = tmp_path / "kthreadd"
    shutil.copy(shell, copy)
    link = tmp_path / "hard"
    os.link(shell, link)
    assert copies.is_copy(-1, str(copy))  # pid -1: no /proc entry, the path is judged
    assert copies.is_copy(-1, str(link))


def test_same_size_other_content_and_other_sizes_are_not(tmp_path: Path) -> None:
    shell = _fake_shell(tmp_path)
    copies = ShellCopies([str(shell)])
    same_size = tmp_path / "other"
    same_size.write_bytes(b"\x7fELF" + os.urandom(4096))
    patched = tmp_path / "patched"
    patched.write_bytes(shell.read_bytes() + b"\0")
    assert not copies.is_copy(-1, str(same_size))
    assert not copies.is_copy(-1, str(patched))
    assert not copies.is_copy(-1, str(tmp_path / "gone"))


def test_rewritten_in_place_is_judged_again(tmp_path: Path) -> None:
    shell = _fake_shell(tmp_path)
    copies = ShellCopies([str(shell)])
    target = tmp_path / "t"
    target.write_bytes(b"\0" * shell.stat().st_size)
    assert not copies.is_copy(-1, str(target))
    shutil.copy(shell, target)  # same inode and size, new content and ctime
    assert copies.is_copy(-1, str(target))


def test_the_running_program_is_judged_by_proc_exe(tmp_path: Path) -> None:
    copy = tmp_path / "worker"
    shutil.copy("/bin/dash", copy)
    copies = ShellCopies(["/bin/dash"])
    proc = subprocess.Popen([str(copy), "-c", "read x"], stdin=subprocess.PIPE)
    try:
        copy.unlink()  # deleted while running: /proc/<pid>/exe still holds the content
        assert copies.is_copy(proc.pid, str(copy))
    finally:
        proc.kill()
        proc.wait(5)


def test_no_shells_installed_means_no_copies(tmp_path: Path) -> None:
    assert not ShellCopies([str(tmp_path / "none")]).is_copy(-1, "/bin/dash")


def test_busybox_sh_is_an_interactive_shell() -> None:
    assert interactive_shell(["busybox", "sh"])
    assert interactive_shell(["/bin/busybox", "ash", "-i"])
    assert not interactive_shell(["busybox", "sh", "/tmp/x.sh"])
    assert not interactive_shell(["busybox", "sh", "-c", "id"])
    assert not interactive_shell(["sh", "sh"])  # a script named sh
