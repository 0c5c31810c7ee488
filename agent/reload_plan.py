"""What a SIGHUP reload does with each changed option: apply it, or say it needs a restart.

:func:`plan` compares the running configuration with the new one option by option (dotted
names, ``detection.late_allowance_seconds``) and sorts every changed option into exactly one
of: rules (always reloaded), engine options applied in place, collectors restarted, sinks
rebuilt — or :attr:`ReloadPlan.restart_only`, which the daemon names in one warning. No option
can change silently: an option this module does not know is restart-only by default, and
``tests/test_reload_plan.py`` checks that every option of the configuration model is covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.config import Config

APPLIED_BY_RULE_RELOAD = ("detection.rule_paths", "detection.extra_rule_paths")
"""Rules are re-read on every reload."""
ENGINE_OPTIONS = ("detection.meta_alert_threshold",)
"""Applied to the running engine in place (:meth:`agent.detection.Engine.reconfigure`)."""
SINK_SECTIONS = ("sinks", "elasticsearch")
"""Rebuilt (new router, the old one closed) when anything in them changes."""
NOT_COLLECTORS = ("agent", "metrics", "pipeline", "scheduler", "detection", "sinks",
                  "elasticsearch")
"""Every other top-level section configures collectors: they are restarted."""
RESTART_ONLY = ("agent", "metrics", "pipeline", "scheduler", "detection")
"""What is left of these sections once the above are taken out needs a restart (the log
setup, the identity in alerts, the state directory, the metrics endpoint, queue sizes, timer
resolution, the late allowance every correlation window was built with, rule watching)."""


@dataclass(frozen=True)
class ReloadPlan:
    changed: tuple[str, ...]
    """Every option whose value changed (dotted names, sorted)."""
    engine_options: bool
    restart_collectors: bool
    swap_sinks: bool
    restart_only: tuple[str, ...]
    """Changed options that take effect only when the agent restarts."""


def plan(old: Config, new: Config) -> ReloadPlan:
    changed = tuple(sorted(_diff(old.model_dump(), new.model_dump(), "")))
    engine = any(c in ENGINE_OPTIONS for c in changed)
    sinks = any(_section(c) in SINK_SECTIONS for c in changed)
    collectors = any(_section(c) not in NOT_COLLECTORS for c in changed)
    restart = tuple(
        c for c in changed
        if _section(c) in RESTART_ONLY and c not in ENGINE_OPTIONS
        and not c.startswith(APPLIED_BY_RULE_RELOAD)
    )
    return ReloadPlan(changed, engine, collectors, sinks, restart)


def _section(name: str) -> str:
    return name.split(".", 1)[0]


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(name)
            elif a[key] != b[key]:
                out.extend(_diff(a[key], b[key], name))
        return out
    return [prefix] if a != b else []
