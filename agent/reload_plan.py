"""What a SIGHUP reload does with each changed option: apply it, or say it needs a restart.

Every option has exactly one :class:`Action`, decided here and nowhere else: per option in
:data:`OPTIONS` (the longest dotted prefix wins, so ``agent.labels.env`` is ``agent.labels``),
otherwise by its top-level section in :data:`SECTIONS`. :func:`plan` compares the running
configuration with the new one option by option (dotted names) and sorts every changed option
by its action; :attr:`ReloadPlan.restart_only` is what the daemon names in one warning,
"changed options take effect only after a restart". Complete by construction: an option
nothing classifies is restart-only (never silently ignored), and ``tests/test_reload_plan.py``
fails when a section of the model is missing from :data:`SECTIONS`, when a section without a
default leaves an option unlisted, or when :data:`OPTIONS` names an option the model lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.config import Config


class Action(StrEnum):
    RULES = "rules"
    """Read again with the rule set on every reload (paths, tuning, the refusal to run blind)."""
    ENGINE = "engine"
    """Applied to the running engine in place (:meth:`agent.detection.Engine.reconfigure`)."""
    WATCH = "watch"
    """The rule-file watch job is registered again with the new settings."""
    COLLECTORS = "collectors"
    """Every collector is stopped and the new configuration's collectors are started."""
    SINKS = "sinks"
    """A new router with the new sinks; the old one is flushed and closed."""
    RESTART = "restart"
    """Named in the warning: takes effect only after a restart."""


OPTIONS: dict[str, Action] = {
    "detection.shipped_rules": Action.RULES,
    "detection.rule_paths": Action.RULES,
    "detection.extra_rule_paths": Action.RULES,
    "detection.allow_empty": Action.RULES,
    "detection.allow_unsafe_rule_paths": Action.RULES,
    "detection.disabled_rules": Action.RULES,
    "detection.trusted_sources": Action.RULES,
    "detection.meta_alert_threshold": Action.ENGINE,
    "detection.watch_rules": Action.WATCH,
    "detection.watch_interval_seconds": Action.WATCH,
    # every correlation window and late-event history was sized with it
    "detection.late_allowance_seconds": Action.RESTART,
}
"""Options whose action is not their section's."""

SECTIONS: dict[str, Action | None] = {
    # the log setup, the identity stamped on alerts, the state directory
    "agent": Action.RESTART,
    "metrics": Action.RESTART,      # the listening endpoint, TLS, basic auth
    "pipeline": Action.RESTART,     # queue and batch sizes, tick, retry buffer, shutdown
    "scheduler": Action.RESTART,    # the job executor's misfire grace
    "detection": None,              # mixed: every option is in OPTIONS
    "sinks": Action.SINKS,
    "elasticsearch": Action.SINKS,
    "host_metrics": Action.COLLECTORS,
    "inputs": Action.COLLECTORS,
    "capture": Action.COLLECTORS,
    "network": Action.COLLECTORS,
    "threat_intel": Action.COLLECTORS,
    "process": Action.COLLECTORS,
    "sockets": Action.COLLECTORS,
    "auth_logs": Action.COLLECTORS,
    "web_logs": Action.COLLECTORS,
    "fim": Action.COLLECTORS,
    "kernel_modules": Action.COLLECTORS,
    "auditd": Action.COLLECTORS,
}
"""The action of every option of a section not listed in :data:`OPTIONS` (``None``: each is)."""


def action(option: str) -> Action:
    """What a reload does when ``option`` (a dotted name) changed."""
    parts = option.split(".")
    for end in range(len(parts), 0, -1):
        found = OPTIONS.get(".".join(parts[:end]))
        if found is not None:
            return found
    return SECTIONS.get(parts[0]) or Action.RESTART


@dataclass(frozen=True)
class ReloadPlan:
    changed: tuple[str, ...]
    """Every option whose value changed (dotted names, sorted)."""
    engine_options: bool
    restart_collectors: bool
    swap_sinks: bool
    restart_only: tuple[str, ...]
    """Changed options that take effect only when the agent restarts."""
    watch_rules: bool = False
    """The rule-file watch is registered again."""


def plan(old: Config, new: Config) -> ReloadPlan:
    changed = tuple(sorted(_diff(old.model_dump(), new.model_dump(), "")))
    actions = {c: action(c) for c in changed}
    todo = set(actions.values())
    return ReloadPlan(
        changed,
        engine_options=Action.ENGINE in todo,
        restart_collectors=Action.COLLECTORS in todo,
        swap_sinks=Action.SINKS in todo,
        restart_only=tuple(c for c in changed if actions[c] is Action.RESTART),
        watch_rules=Action.WATCH in todo,
    )


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
