"""The rule set a configuration asks for, and the validation of a reload before anything changes.

:func:`load_rules` loads, tunes and logs the rules of a configuration (start-up and every
reload). :func:`prepare` reads the new config and its rules for a SIGHUP (or a changed rule
file, :class:`RuleWatch`) and checks them completely — schema, :func:`agent.preflight.check`,
rule errors, :func:`agent.detection.sources.blind_spots` — so the daemon either applies a whole
valid candidate (what each changed option needs is :func:`agent.reload_plan.plan`) or keeps
running on the old one, with the reason logged and ``vedette_config_reloads_total{result="error"}``
counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import preflight
from agent.alerts import Alert
from agent.config import Config, load_config
from agent.detection import LoadReport
from agent.detection.sources import blind_spots, load_configured, watched_paths
from agent.detection.tuning import apply_config
from agent.errors import ConfigErrors
from agent.metrics import AgentMetrics

log = logging.getLogger("vedette")


def load_rules(config: Config, metrics: AgentMetrics) -> LoadReport:
    """The configured rules with ``detection.disabled_rules``/``trusted_sources`` applied; every
    error, rejection and override logged (the report's internal alerts are the caller's)."""
    report = load_configured(config.detection, metrics=metrics)
    for err in report.errors:
        log.error("rule error", extra={"error": str(err)})
    for rejection in report.rejections:
        log.info("rule rejected", extra={"rejection": str(rejection)})
    for override in report.overrides:
        log.info("local rule override", extra={"override": override})
    log.info("rules loaded", extra={"summary": report.summary_line()})
    det = config.detection  # disabled_rules and trusted_sources (docs/tuning.md)
    tuned = apply_config(report.ruleset, det.disabled_rules, det.trusted_sources, metrics)
    report.ruleset = tuned.ruleset
    for note in tuned.notes:
        log.warning("rule tuning", extra={"note": note})
    if tuned.disabled or det.trusted_sources:
        log.info("rule tuning", extra={"disabled_rules": len(tuned.disabled),
                                       "trusted_sources": len(det.trusted_sources)})
    return report


@dataclass(frozen=True)
class Candidate:
    """A new configuration and its rule set, both valid: safe to apply."""

    config: Config
    report: LoadReport


def prepare(config_path: Path | None, metrics: AgentMetrics, watch: RuleWatch,
            internal: Callable[[list[Alert]], None]) -> Candidate | None:
    """Read and check the new config and rules; ``None`` (logged, counted) when either is
    invalid or would leave the agent blind. ``internal`` receives the alerts the rule loading
    raised about the agent itself (refused rule paths), valid or not; ``watch`` remembers the
    files just read, so a broken rule file is not re-read every watch interval."""
    try:
        new = load_config(config_path)
        problems = preflight.check(new, config_path)
        if problems:
            raise ConfigErrors(problems)
    except ConfigErrors as exc:
        metrics.config_reloads.labels("error").inc()
        for err in exc.errors:
            log.error("reload refused: invalid configuration", extra={"error": str(err)})
        return None
    report = load_rules(new, metrics)
    watch.remember(new)
    internal(report.internal_alerts)
    blind = blind_spots(new, report)
    if report.errors or blind:
        metrics.config_reloads.labels("error").inc()
        for reason in blind:
            log.error("reload refused: the new rule set would leave the agent blind; "
                      "keeping the previous one", extra={"reason": reason})
        if report.errors:
            log.error("reload refused: rule errors; keeping the previous rule set",
                      extra={"errors": len(report.errors)})
        return None
    return Candidate(new, report)


class RuleWatch:
    """``detection.watch_rules``: have the rule files of a configuration changed (mtimes)?"""

    def __init__(self) -> None:
        self._mtimes: dict[Path, float] = {}

    def remember(self, config: Config) -> None:
        self._mtimes = _mtimes(watched_paths(config.detection))

    def changed(self, config: Config) -> bool:
        current = _mtimes(watched_paths(config.detection))
        if current == self._mtimes:
            return False
        self._mtimes = current
        return True


def _mtimes(paths: list[Path]) -> dict[Path, float]:
    out: dict[Path, float] = {}
    for root in paths:
        candidates = (
            [root]
            if root.is_file()
            else sorted(root.rglob("*.yml")) + sorted(root.rglob("*.yaml"))
            if root.is_dir()
            else []
        )
        for path in candidates:
            try:
                out[path] = path.stat().st_mtime
            except OSError:
                continue
    return out
