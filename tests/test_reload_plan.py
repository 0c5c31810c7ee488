"""Every configuration option is either applied on SIGHUP or named as needing a restart.

Complete by construction: every section of the model is classified (agent/reload_plan.py
``SECTIONS``), a mixed section lists each of its options, and every option of the model, changed
alone (or with the option it must come with), is sorted by the plan into exactly what its
classification says. The daemon side is tested with real SIGHUPs in tests/e2e/test_daemon.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from agent import reload_plan
from agent.config import Config
from agent.detection import Engine, EngineOptions, Ruleset
from agent.reload_plan import Action


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        dotted = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaves(ann, dotted + "."))
        else:
            out.append(dotted)
    return out


OPTIONS = _leaves(Config)

VALUES: dict[str, Any] = {
    "detection.trusted_sources": [{"cidrs": ["198.18.0.0/15"]}],
    "elasticsearch.compression": True,
    "auth_logs.journal": "off",
}
"""Options the generic value generator cannot change (a type of their own)."""
COMPANIONS: dict[str, dict[str, Any]] = {
    "metrics.tls_cert_file": {"metrics.tls_key_file": "/tmp/vedette-key.pem"},
    "metrics.tls_key_file": {"metrics.tls_cert_file": "/tmp/vedette-cert.pem"},
    "metrics.basic_auth_username": {"metrics.basic_auth_password": "secret"},
    "metrics.basic_auth_password": {"metrics.basic_auth_username": "prom"},
    "metrics.basic_auth_password_file": {"metrics.basic_auth_username": "prom"},
    "elasticsearch.username": {"elasticsearch.password": "secret"},
    "elasticsearch.password": {"elasticsearch.username": "vedette"},
    "elasticsearch.password_file": {"elasticsearch.username": "vedette"},
    "elasticsearch.client_cert_file": {"elasticsearch.client_key_file": "/tmp/vedette-key.pem"},
    "elasticsearch.client_key_file": {"elasticsearch.client_cert_file": "/tmp/vedette-c.pem"},
}
"""Options the model accepts only together with another one (of the same section)."""


def _set(base: dict[str, Any], option: str, value: Any) -> None:
    section: Any = base
    *path, last = option.split(".")
    for part in path:
        section = section[part]
    section[last] = value


def _changed(option: str) -> Config:
    """A config with ``option`` (and only what must come with it) set to another valid value."""
    default = Config().model_dump()
    section: Any = default
    for part in option.split(".")[:-1]:
        section = section[part]
    value = section[option.rsplit(".", maxsplit=1)[-1]]
    candidates = [VALUES[option]] if option in VALUES else _others(value)
    for candidate in candidates:
        if candidate == value:
            continue
        base = Config().model_dump()
        _set(base, option, candidate)
        for other, companion in COMPANIONS.get(option, {}).items():
            _set(base, other, companion)
        try:
            new = Config.model_validate(base)
        except Exception:
            continue
        if new.model_dump() != default:
            return new
    raise AssertionError(f"no other valid value found for {option}: add it to VALUES or "
                         "COMPANIONS")


def _others(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int | float):
        return [value + 1, value * 2, value / 2, 1, 0]
    if isinstance(value, str):
        return [value + "x", "json", "debug", "warning", "never", "always", "x", "drop_oldest"]
    if isinstance(value, list):
        return [[*value, "x"], [], ["/tmp/x"], [53, 5353], ["http://198.18.0.1:9200"]]
    if isinstance(value, dict):
        return [{**value, "x": "y"}]
    return ["/tmp/vedette-x", "x", 1, True]


def test_the_option_walk_finds_the_sections() -> None:
    assert {"detection.late_allowance_seconds", "pipeline.queue_size",
            "agent.log_level", "scheduler.misfire_grace_seconds"} <= set(OPTIONS)


def test_every_section_is_classified_and_mixed_sections_list_every_option() -> None:
    assert set(reload_plan.SECTIONS) == set(Config.model_fields)
    for name in OPTIONS:
        if reload_plan.SECTIONS[name.split(".")[0]] is None:
            assert name in reload_plan.OPTIONS, f"{name}: classify it in reload_plan.OPTIONS"
    assert set(reload_plan.OPTIONS) <= set(OPTIONS), "OPTIONS names an option the model lacks"


def test_an_option_nothing_classifies_needs_a_restart() -> None:
    assert reload_plan.action("some_new_section.option") is Action.RESTART
    assert reload_plan.action("agent.labels.env") is Action.RESTART
    assert reload_plan.action("detection.disabled_rules") is Action.RULES


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_is_applied_or_named(option: str) -> None:
    todo = reload_plan.plan(Config(), _changed(option))
    assert any(n == option or n.startswith(option + ".") for n in todo.changed), todo
    for name in todo.changed:
        what = reload_plan.action(name)
        assert (name in todo.restart_only) is (what is Action.RESTART), (name, todo)
        assert {Action.ENGINE: todo.engine_options, Action.COLLECTORS: todo.restart_collectors,
                Action.SINKS: todo.swap_sinks, Action.WATCH: todo.watch_rules}.get(
                    what, True), (name, todo)


@pytest.mark.parametrize(("option", "restart"), [
    ("detection.late_allowance_seconds", True), ("detection.meta_alert_threshold", False),
    ("detection.watch_rules", False), ("detection.watch_interval_seconds", False),
    ("detection.disabled_rules", False), ("detection.allow_empty", False),
    ("detection.shipped_rules", False), ("pipeline.queue_size", True),
    ("pipeline.tick_seconds", True), ("scheduler.misfire_grace_seconds", True),
    ("agent.log_level", True), ("agent.log_format", True), ("metrics.port", True),
    ("network.max_events_per_second", False), ("sinks.jsonl.path", False),
])
def test_the_options_the_issue_names(option: str, restart: bool) -> None:
    todo = reload_plan.plan(Config(), _changed(option))
    assert (option in todo.restart_only) is restart, todo
    if option == "detection.meta_alert_threshold":
        assert todo.engine_options
    if option.startswith("detection.watch_"):
        assert todo.watch_rules


def test_reconfigure_applies_the_threshold_but_keeps_the_late_allowance() -> None:
    engine = Engine(Ruleset(), None, EngineOptions(late_allowance_seconds=5.0))
    engine.reconfigure(EngineOptions(late_allowance_seconds=60.0, meta_alert_threshold=7))
    assert engine.options.meta_alert_threshold == 7
    assert engine.options.late_allowance_seconds == 5.0
