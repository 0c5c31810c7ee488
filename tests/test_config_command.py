"""`vedette config check` and `vedette config example`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import agent.config as config_module
from agent.cli import main
from agent.commands.config import render_example
from agent.config import Config, effective, load_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED_EXAMPLE = REPO / "systemd" / "vedette.yaml.example"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    for name in list(os.environ):
        if name.startswith("VEDETTE_"):
            monkeypatch.delenv(name)


def test_check_prints_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "vedette.yaml"
    path.write_text(
        "metrics:\n  port: 9999\n  basic_auth_username: prom\n  basic_auth_password: hunter2\n"
        "elasticsearch:\n  api_key: key-123\n"
    )
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "key-123" not in out
    assert out.startswith(f"# effective configuration from {path}; secrets masked\n")
    shown = yaml.safe_load(out)
    assert shown == effective(load_config(path, environ={}))
    assert shown["metrics"]["port"] == 9999
    assert shown["metrics"]["basic_auth_password"] == "********"


def test_check_without_config_uses_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "built-in defaults" in out.splitlines()[0]
    assert yaml.safe_load(out) == effective(Config())


def test_check_reports_every_error_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("metrics:\n  port: high\n  prot: 1\nagent:\n  log_level: loud\n")
    assert main(["config", "check", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[-1] == "3 error(s)"
    assert sorted(line.split(": ")[0] for line in lines[:-1]) == [
        f"{path}:2", f"{path}:3", f"{path}:5"
    ]
    assert f"{path}:3: metrics.prot: unknown key" in lines


def test_check_reports_env_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VEDETTE_METRICS__PORT", "nope")
    assert main(["config", "check"]) == 1
    assert capsys.readouterr().err.startswith("<env:VEDETTE_METRICS__PORT>: metrics.port: ")


def test_check_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("agent:\n  name: [unclosed\n")
    assert main(["config", "check", "--config", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:3: invalid YAML")


def test_example_command_prints_render_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    assert capsys.readouterr().out == render_example()


def field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += field_paths(annotation, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def uncomment(example: str) -> str:
    """Uncomment the option lines (``# name: value`` where name is a field at that depth)."""
    lines = []
    stack: list[tuple[int, type[BaseModel]]] = [(-1, Config)]
    for line in example.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        while len(stack) > 1 and indent <= stack[-1][0]:
            stack.pop()
        model = stack[-1][1]
        header = re.fullmatch(r"(\w+):", body)
        if header and header.group(1) in model.model_fields:
            sub = model.model_fields[header.group(1)].annotation
            assert isinstance(sub, type) and issubclass(sub, BaseModel)
            stack.append((indent, sub))
            lines.append(line)
            continue
        option = re.fullmatch(r"# (\w+): (.*)", body)
        if option and option.group(1) in model.model_fields:
            lines.append(" " * indent + body[2:])
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def test_example_documents_every_option_with_its_default(tmp_path: Path) -> None:
    example = render_example()
    uncommented = uncomment(example)
    data = yaml.safe_load(uncommented)
    for path in field_paths(Config):
        node = data
        for key in path:
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} not in the example"
            node = node[key]
    # with every option uncommented it is a valid config equal to the defaults
    path = tmp_path / "uncommented.yaml"
    path.write_text(uncommented)
    assert load_config(path, environ={}) == Config()


def test_example_as_shipped_loads_as_defaults(tmp_path: Path) -> None:
    path = tmp_path / "vedette.yaml"
    path.write_text(render_example())
    assert load_config(path, environ={}) == Config()


def test_shipped_example_is_the_generated_one() -> None:
    if not SHIPPED_EXAMPLE.exists():
        pytest.skip("systemd/vedette.yaml.example not generated yet")
    assert SHIPPED_EXAMPLE.read_text() == render_example(), (
        "regenerate: vedette config example > systemd/vedette.yaml.example"
    )
