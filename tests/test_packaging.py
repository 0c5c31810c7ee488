"""The wheel alone runs the shipped rules: built with `pip wheel`, installed into a throwaway venv,
run from a directory without the checkout; a local folder overrides one rule id and adds one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.rule_texts import process_rule

pytestmark = pytest.mark.slow

SHIPPED_ID = "0ea20e89-7a90-4fd0-8343-248249429291"  # rules/process: exec_from_tmp
NEW_ID = "44444444-4444-4444-8444-444444444444"
NEW_RULE = process_rule(NEW_ID, title="Netcat started (local rule)")


def _shipped_rule_text() -> str:
    text = (REPO / "rules" / "process" / "download_then_execute.yml").read_text()
    doc = next(d for d in text.split("\n---\n") if SHIPPED_ID in d)
    return doc.replace("title: Execution from a temporary folder",
                       "title: Execution from a temporary folder (tuned locally)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only the built wheel; dependencies come from the test venv's site-packages
    through a plain path entry (which does not run that venv's editable-install hook)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    # built from a copy: setuptools would leave build/ and *.egg-info in the checkout
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("agent", "rules"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(dist), str(src)], check=True, cwd=root)
    wheel = next(dist.glob("vedette-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/shipped_rules/process/download_then_execute.yml" in names
    assert any(n.startswith("agent/shipped_rules/process/") and n.endswith(".jsonl")
               for n in names)  # fixtures ship too: `vedette rules test` runs on an install
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def vedette(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "vedette"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_the_installed_wheel_finds_its_shipped_rules(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import agent.config as c; print(c.shipped_rules_dir())"],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed)) and where.endswith("agent/shipped_rules")
    listed = vedette(installed, tmp_path, "rules", "list")
    assert listed.returncode == 0, listed.stderr
    assert SHIPPED_ID in listed.stdout
    validated = vedette(installed, tmp_path, "rules", "validate", "--no-lint")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert " 0 errors" in validated.stdout.splitlines()[-1]


def test_a_local_folder_overrides_one_rule_and_adds_another(
    installed: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local-rules"
    local.mkdir()
    (local / "tuned.yml").write_text(_shipped_rule_text())
    (local / "netcat.yml").write_text(NEW_RULE)
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({"detection": {"rule_paths": [str(local)]}}))
    before = vedette(installed, tmp_path, "rules", "validate", "--no-lint").stdout.splitlines()[-1]
    shipped_total = int(before.split()[0])
    listed = vedette(installed, tmp_path, "rules", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert "(tuned locally)" in next(line for line in lines if line.startswith(SHIPPED_ID))
    assert any(line.startswith(NEW_ID) for line in lines)
    summary = listed.stdout.splitlines()[-1]
    assert summary.startswith(f"{shipped_total + 1} rules: {shipped_total + 1} compiled")
