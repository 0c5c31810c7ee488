"""`make deb`: the package builds, installs on this machine with dpkg -i, runs its checks as the
`vedette` user, puts every file where docs/install.md says, and purges without a trace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import __version__
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian machine"),
]

OWNED = [Path(p) for p in ("/opt/vedette", "/etc/vedette", "/usr/share/vedette",
                           "/usr/bin/vedette", "/usr/lib/systemd/system/vedette.service",
                           "/usr/lib/sysusers.d/vedette.conf", "/usr/lib/tmpfiles.d/vedette.conf",
                           "/usr/share/doc/vedette")]
STATE = Path("/var/lib/vedette")


def sh(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, **kw)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def installed() -> bool:
    return sh("dpkg-query", "-W", "-f=${Status}", "vedette", check=False).stdout.startswith(
        "install")


def user_exists() -> bool:
    return sh("getent", "passwd", "vedette", check=False).returncode == 0


@pytest.fixture
def deb(tmp_path: Path) -> Iterator[Path]:
    if installed() or any(p.exists() or p.is_symlink() for p in OWNED) or user_exists():
        pytest.skip("a vedette package, its files or its user are already on this machine")
    env = {**os.environ, "OUT": str(tmp_path / "dist"), "WORK": str(tmp_path / "work"),
           "PIP": f"{sys.executable} -m pip"}
    sh("bash", str(REPO / "packaging" / "deb" / "build.sh"), env=env)
    built = next((tmp_path / "dist").glob(f"vedette_{__version__}_*.deb"))
    # /var/lib/vedette may hold a root test run's agent id: keep it aside, put it back after
    saved = tmp_path / "saved-state"
    if STATE.exists():
        shutil.move(STATE, saved)
    try:
        yield built
    finally:
        if installed():
            sh("dpkg", "--purge", "vedette", check=False)
        if saved.exists():
            shutil.rmtree(STATE, ignore_errors=True)
            shutil.move(saved, STATE)


def test_the_package_installs_checks_and_purges_cleanly(deb: Path) -> None:
    sh("dpkg-deb", "--info", str(deb))
    sh("dpkg", "-i", str(deb))
    assert installed() and user_exists()

    assert sh("/usr/bin/vedette", "version").stdout.startswith(f"vedette {__version__} ")
    assert Path("/usr/bin/vedette").resolve() == Path("/opt/vedette/venv/bin/vedette")
    unit = Path("/usr/lib/systemd/system/vedette.service").read_text()
    assert "ExecStart=/usr/bin/vedette run --config /etc/vedette/vedette.yaml\n" in unit
    groups = sh("id", "-nG", "vedette").stdout.split()
    assert {"vedette", "adm"} <= set(groups)
    conf = Path("/etc/vedette/vedette.yaml").stat()
    assert (conf.st_mode & 0o777, conf.st_uid) == (0o640, 0)
    assert sh("stat", "-c", "%G", "/etc/vedette/vedette.yaml").stdout.strip() == "vedette"
    assert sh("stat", "-c", "%U %a", str(STATE)).stdout.split() == ["vedette", "750"]
    assert "/etc/vedette/vedette.yaml" in sh("dpkg-query", "-W", "-f=${Conffiles}",
                                             "vedette").stdout
    rules = Path("/usr/share/vedette/rules")
    assert (rules / "process" / "download_then_execute.yml").is_file()
    wheelhouse = Path("/usr/share/vedette/wheelhouse")
    assert (wheelhouse / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assert list(wheelhouse.glob(f"vedette-{__version__}-*.whl"))

    # the checks an operator runs, as the agent's own user, from a directory without a checkout
    check = sh("runuser", "-u", "vedette", "--", "/usr/bin/vedette", "config", "check",
               "--config", "/etc/vedette/vedette.yaml", cwd="/")
    assert check.stdout.rstrip().endswith(": ok")
    validate = sh("runuser", "-u", "vedette", "--", "/usr/bin/vedette", "rules", "validate",
                  "--no-lint", cwd="/")
    summary = validate.stdout.splitlines()[-1]
    assert summary.endswith(" 0 errors") and " 0 rejected" in summary
    shipped = sum(1 for _ in (REPO / "rules").rglob("*.yml")
                  if not any(part.endswith(".tests") for part in _.parts))
    assert int(summary.split()[0]) >= shipped  # files, each holding one or more rules

    sh("dpkg", "--purge", "vedette")
    assert not installed()
    left = [str(p) for p in [*OWNED, STATE] if p.exists() or p.is_symlink()]
    assert left == []
    assert not user_exists()
    assert sh("getent", "group", "vedette", check=False).returncode != 0
