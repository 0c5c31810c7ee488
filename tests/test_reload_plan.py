"""Every configuration option is either applied on SIGHUP or named as needing a restart."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from agent import reload_plan
from agent.config import Config
from agent.detection import Engine, EngineOptions, Ruleset


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


def _changed(option: str) -> Config:
    """A config with ``option`` set to some other valid value."""
    base = Config().model_dump()
    section: Any = base
    *path, last = option.split(".")
    for part in path:
        section = section[part]
    value = section[last]
    for candidate in _others(value):
        if candidate == value:
            continue
        section[last] = candidate
        try:
            new = Config.model_validate(base)
        except Exception:
            continue
        if new.model_dump() != Config().model_dump():
            return new
    pytest.skip(f"no other valid value found for {option}")


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


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_is_applied_or_named(option: str) -> None:
    new = _changed(option)
    todo = reload_plan.plan(Config(), new)
    assert todo.changed, option
    handled = (todo.engine_options or todo.restart_collectors or todo.swap_sinks
               or any(c.startswith(reload_plan.APPLIED_BY_RULE_RELOAD) for c in todo.changed))
    named = set(todo.restart_only)
    for name in todo.changed:
        assert name in named or handled, (option, todo)


@pytest.mark.parametrize(("option", "restart"), [
    ("detection.late_allowance_seconds", True), ("detection.meta_alert_threshold", False),
    ("detection.watch_rules", True), ("pipeline.queue_size", True),
    ("scheduler.misfire_grace_seconds", True), ("agent.log_level", True),
    ("agent.log_format", True), ("metrics.port", True),
])
def test_the_options_the_issue_names(option: str, restart: bool) -> None:
    todo = reload_plan.plan(Config(), _changed(option))
    assert (option in todo.restart_only) is restart, todo
    if option == "detection.meta_alert_threshold":
        assert todo.engine_options


def test_reconfigure_applies_the_threshold_but_keeps_the_late_allowance() -> None:
    engine = Engine(Ruleset(), None, EngineOptions(late_allowance_seconds=5.0))
    engine.reconfigure(EngineOptions(late_allowance_seconds=60.0, meta_alert_threshold=7))
    assert engine.options.meta_alert_threshold == 7
    assert engine.options.late_allowance_seconds == 5.0
