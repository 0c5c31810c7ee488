"""The host collectors are built from config through the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from agent.collectors.base import CollectorContext
from agent.collectors.logs import auth as auth_builder
from agent.collectors.registry import BUILDERS
from agent.config import Config
from agent.errors import CollectorError
from agent.identity import Identity
from agent.metrics import AgentMetrics

HOST = ("process", "sockets", "auth_logs", "web_logs", "auditd", "fim", "kernel_modules")


def _ctx(tmp_path: Path, **sections: dict) -> CollectorContext:
    config = Config.model_validate(sections)
    identity = Identity("h1", "hid", "aid", "agent", "eph")
    return CollectorContext(config, identity, AgentMetrics(CollectorRegistry()), tmp_path)


def test_every_host_builder_is_registered_and_builds(tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text("")
    (tmp_path / "audit.log").write_text("")
    ctx = _ctx(tmp_path,
               auth_logs={"paths": [str(tmp_path / "auth.log")], "journal": "off"},
               web_logs={"paths": [str(tmp_path / "access.log")]},
               auditd={"path": str(tmp_path / "audit.log")},
               fim={"root": str(tmp_path), "paths": ["/srv/app.conf"]})
    built = {}
    for name in HOST:
        assert name in BUILDERS
        try:
            built[name] = [c.name for c in BUILDERS[name](ctx)]
        except CollectorError as exc:  # e.g. no /proc/modules in a sandbox
            built[name] = [f"unavailable: {exc}"]
    assert built["process"] == ["process", "deleted_executables", "process_cpu"]
    assert built["auth_logs"] == ["auth_logs"]
    assert built["web_logs"] == ["web_logs"]
    assert built["auditd"] == ["auditd"]
    assert built["fim"] == ["fim"]
    assert built["sockets"] == ["sockets"]


def test_disabled_sections_build_nothing(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, **{name: {"enabled": False} for name in HOST})
    assert all(BUILDERS[name](ctx) == [] for name in HOST)


def test_auditd_default_path_only_when_present(tmp_path: Path) -> None:
    if not Config.model_validate({}).auditd.path.exists():
        assert BUILDERS["auditd"](_ctx(tmp_path)) == []
    configured = _ctx(tmp_path, auditd={"path": str(tmp_path / "later" / "audit.log")})
    assert [c.name for c in BUILDERS["auditd"](configured)] == ["auditd"]


def test_journal_modes(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.log")
    auto = _ctx(tmp_path, auth_logs={"paths": [missing], "journalctl": "/bin/true"})
    assert [c.name for c in BUILDERS["auth_logs"](auto)] == ["journal"]
    forced = _ctx(tmp_path, auth_logs={"paths": [missing], "journal": "on",
                                       "journalctl": str(tmp_path / "no-journalctl")})
    with pytest.raises(CollectorError):
        BUILDERS["auth_logs"](forced)


def test_auto_prefers_the_journal_over_syslog_files(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "auth.log").write_text("")
    (tmp_path / "journal").mkdir()
    section = {"paths": [str(tmp_path / "auth.log")], "journalctl": "/bin/true"}
    monkeypatch.setattr(auth_builder, "JOURNAL_DIRS", (str(tmp_path / "journal"),))
    assert [c.name for c in BUILDERS["auth_logs"](_ctx(tmp_path, auth_logs=section))] == [
        "journal"]
    monkeypatch.setattr(auth_builder, "JOURNAL_DIRS", (str(tmp_path / "no-journal"),))
    assert [c.name for c in BUILDERS["auth_logs"](_ctx(tmp_path, auth_logs=section))] == [
        "auth_logs"]


def test_config_rejects_relative_fim_paths() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"fim": {"paths": ["etc/passwd"]}})


def test_auth_logs_without_any_source_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(auth_builder, "JOURNAL_DIRS", (str(tmp_path / "no-journal"),))
    missing = str(tmp_path / "nope.log")
    nothing = _ctx(tmp_path, auth_logs={"paths": [missing]})
    with pytest.raises(CollectorError, match="no authentication log to follow"):
        BUILDERS["auth_logs"](nothing)
    forced = _ctx(tmp_path, auth_logs={"paths": [missing], "journal": "on",
                                       "journalctl": "/bin/true"})
    with pytest.raises(CollectorError, match="no systemd journal"):
        BUILDERS["auth_logs"](forced)
