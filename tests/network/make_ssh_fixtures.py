"""Capture real SSH sessions in the namespace lab: the pcaps behind the SSH analyzer's tests and
the ``ssh_wire_bruteforce`` rule fixtures (``rules/network/fixtures/ssh/``).

Run as root from the repository root (needs openssh-server, sshpass, hydra, tcpdump)::

    .venv/bin/python -m tests.network.make_ssh_fixtures rules/network/fixtures/ssh

Each scenario is captured on the server's interface (``tcpdump -n -w``) while real tools run:

- ``password_ok``: one login with the correct password (sshpass + ssh);
- ``password_fail``: one connection, three wrong passwords (ssh asking through SSH_ASKPASS);
- ``key_ok``: one public-key login;
- ``hydra_t1`` / ``hydra_t4``: hydra ``-t 1`` / ``-t 4`` with a 24-word list (one right);
- ``logins_30``: 30 scripted logins in under 60 s, key and password alternating.

``sshd_truth.json`` records what sshd logged for each scenario ("Failed password" and
"Accepted" lines): the counts the wire inference is tested against.

A throw-away local user (:data:`LAB_USER`) with a known password exists only while the script
runs (sshd without PAM checks the shadow password); it is deleted at the end, even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.network.lab import ADDRESSES, Lab

LAB_USER = "vdsshlab"
LAB_PASSWORD = "lab-Correct-9"  # a throw-away account of the lab
WORDS = ["123456", "password", "admin", "letmein", "qwerty", "root", "toor", "changeme",
         "welcome", "monkey", "dragon", "master", "shadow", "sunshine", "princess", "football",
         "iloveyou", "trustno1", "abc123", "111111", LAB_PASSWORD, "passw0rd", "login",
         "starwars"]
TGT, CLI, ATK = ADDRESSES["tgt"], ADDRESSES["cli"], ADDRESSES["atk"]
SSH_OPTS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10")


@contextlib.contextmanager
def lab_user() -> Iterator[None]:
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", LAB_USER],
                   check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{LAB_USER}:{LAB_PASSWORD}\n", text=True,
                       check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["userdel", LAB_USER], check=False, capture_output=True)


def start_sshd(lab: Lab, keys: Path, port: int = 22) -> None:
    for name in ("host", "user"):
        if not (keys / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(keys / name)], check=True)
    os.chmod(keys, 0o755)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    os.chmod(keys / "authorized_keys", 0o644)  # sshd reads it as the user
    Path("/run/sshd").mkdir(exist_ok=True)
    lab.spawn("tgt", shutil.which("sshd") or "sshd", "-D", "-e", "-p", str(port),
              "-h", str(keys / "host"), "-o", f"AuthorizedKeysFile={keys / 'authorized_keys'}",
              "-o", "PidFile=none", "-o", "UsePAM=no", "-o", "StrictModes=no",
              "-o", "PasswordAuthentication=yes", "-o", "MaxStartups=100:30:200",
              "-o", "PermitRootLogin=prohibit-password", "-o", f"ListenAddress={TGT}",
              log="sshd.log")
    for _ in range(50):
        probe = lab.run("cli", "bash", "-c", f"exec 3<>/dev/tcp/{TGT}/{port}", timeout=5)
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("sshd did not start")


def password_login(lab: Lab, role: str, password: str, prompts: int = 1,
                   port: int = 22) -> int:
    return lab.run(role, "sshpass", "-p", password, "ssh", *SSH_OPTS, "-p", str(port),
                   "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                   "-o", f"NumberOfPasswordPrompts={prompts}",
                   f"{LAB_USER}@{TGT}", "true", timeout=60).returncode


def askpass_login(lab: Lab, role: str, password: str, prompts: int, work: Path,
                  port: int = 22) -> int:
    """ssh itself asking ``prompts`` times (SSH_ASKPASS), each answered with ``password``."""
    askpass = work / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    os.chmod(askpass, 0o755)
    return lab.run(role, "env", f"SSH_ASKPASS={askpass}", "SSH_ASKPASS_REQUIRE=force",
                   "DISPLAY=none", "setsid", "-w", "ssh", *SSH_OPTS, "-p", str(port),
                   "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                   "-o", f"NumberOfPasswordPrompts={prompts}",
                   f"{LAB_USER}@{TGT}", "true", timeout=60).returncode


def key_login(lab: Lab, role: str, keys: Path, port: int = 22) -> int:
    return lab.run(role, "ssh", *SSH_OPTS, "-p", str(port), "-i", str(keys / "user"),
                   "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
                   f"{LAB_USER}@{TGT}", "true", timeout=60).returncode


def hydra(lab: Lab, wordlist: Path, tasks: int, port: int = 22) -> str:
    r = lab.run("atk", "hydra", "-l", LAB_USER, "-P", str(wordlist), "-t", str(tasks),
                "-I", "-s", str(port), f"ssh://{TGT}", timeout=180)
    return r.stdout + r.stderr


def logins_30(lab: Lab, keys: Path, port: int = 22) -> list[int]:
    codes = []
    for i in range(30):
        codes.append(key_login(lab, "cli", keys, port) if i % 2
                     else password_login(lab, "cli", LAB_PASSWORD, port=port))
    return codes


@contextlib.contextmanager
def capture(lab: Lab, pcap: Path) -> Iterator[None]:
    pcap.unlink(missing_ok=True)
    proc = lab.spawn("tgt", "tcpdump", "-n", "--immediate-mode", "-i", "e0",
                     "-U", "-w", str(pcap), "tcp")
    for _ in range(100):  # the file header is written once the capture is open
        if pcap.exists() and pcap.stat().st_size >= 24:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    try:
        yield
    finally:
        time.sleep(1.5)
        lab.stop(proc)


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    os.umask(0o022)
    with tempfile.TemporaryDirectory() as tmp, lab_user():
        work = Path(tmp)
        os.chmod(work, 0o755)
        lab = Lab(work)
        try:
            lab.up()
            keys = work / "keys"
            keys.mkdir()
            start_sshd(lab, keys)
            wordlist = work / "words.txt"
            wordlist.write_text("\n".join(WORDS) + "\n")
            steps = {
                "password_ok": lambda: print(password_login(lab, "cli", LAB_PASSWORD)),
                "password_fail": lambda: print(askpass_login(lab, "cli", "wrong-1", 3, work)),
                "key_ok": lambda: print(key_login(lab, "cli", keys)),
                "hydra_t1": lambda: print(hydra(lab, wordlist, 1)),
                "hydra_t4": lambda: print(hydra(lab, wordlist, 4)),
                "logins_30": lambda: print(logins_30(lab, keys)),
            }
            truth: dict[str, dict[str, int]] = {}
            log = work / "sshd.log"
            for name, step in steps.items():
                print(f"== {name}", flush=True)
                before = log.read_text(errors="replace")
                with capture(lab, outdir / f"{name}.pcap"):
                    step()
                time.sleep(0.5)
                lines = log.read_text(errors="replace")[len(before):]
                truth[name] = {"failed": lines.count("Failed password"),
                               "accepted": lines.count("Accepted ")}
            (outdir / "sshd_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        finally:
            lab.down()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
