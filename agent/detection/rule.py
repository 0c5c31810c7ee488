"""Compiled rules: typed, immutable data the engine evaluates.

A :class:`DetectionRule` is a Sigma detection compiled into one predicate; a
:class:`CorrelationRule` is a Sigma correlation over detection rules. Both carry the
:class:`~agent.alerts.RuleRef` their alerts show, the per-rule :class:`RuleOptions` read from the
namespaced ``vedette:`` custom attribute, and a content hash so that a hot reload can keep the
state of rules that did not change.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.alerts import RuleRef
from agent.detection.codegen import Predicate
from agent.detection.matcher import Tree

OPTIONS_KEY = "vedette"


@dataclass(frozen=True, slots=True)
class RuleOptions:
    """Engine knobs of one rule (``vedette:`` attribute); every default is safe."""

    cooldown: float = 0.0
    """After an alert closes, new triggers of the same group are dropped (counted) this long."""
    update_interval: float = 60.0
    """An open alert is re-sent at most this often while it keeps growing (and when it closes)."""
    quiet_period: float = 300.0
    """An alert closes after this many seconds without a new matching event."""
    max_groups: int = 10_000
    """Correlation groups and open alerts kept per rule (LRU); evictions are counted."""
    max_alerts_per_minute: int = 100
    """New alerts a rule may open per minute of event time; more are suppressed (meta-alert)."""
    fields: tuple[str, ...] = ()
    """Extra event fields copied into ``alert.matched``."""
    group_by: tuple[str, ...] = ()
    """Single-event rules: the fields that separate alerts (default: one alert per rule)."""

    @classmethod
    def from_attribute(cls, raw: Any) -> RuleOptions:
        """Parse the ``vedette:`` mapping; ``ValueError`` names the bad key."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError(f"'{OPTIONS_KEY}' must be a mapping")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _SECONDS:
                values[key] = _seconds(key, value)
            elif key in _COUNTS:
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
                    raise ValueError(f"{OPTIONS_KEY}.{key} must be an integer in 1..10000000")
                values[key] = value
            elif key in _LISTS:
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise ValueError(f"{OPTIONS_KEY}.{key} must be a list of field names")
                values[key] = tuple(value)
            else:
                valid = ", ".join(sorted((*_SECONDS, *_COUNTS, *_LISTS)))
                raise ValueError(f"unknown option {OPTIONS_KEY}.{key} (valid: {valid})")
        return cls(**values)


_SECONDS = ("cooldown", "update_interval", "quiet_period")
_COUNTS = ("max_groups", "max_alerts_per_minute")
_LISTS = ("fields", "group_by")


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{OPTIONS_KEY}.{key} must be a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= 30 * 86400:
        raise ValueError(f"{OPTIONS_KEY}.{key} must be between 0 and 2592000 seconds")
    return seconds


@dataclass(frozen=True, slots=True)
class Source:
    """Where a rule came from: ``path:line`` for every message about it."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True, eq=False)
class DetectionRule:
    ref: RuleRef
    name: str | None
    source: Source
    logsource: tuple[str | None, str | None, str | None]
    predicate: Predicate
    tree: Tree
    fields: tuple[str, ...]
    options: RuleOptions
    content_hash: str
    output: bool = True
    """False when only correlations use it (Sigma: referenced rules are silent unless generate)."""

    id: str = field(init=False)
    """The rule's id (``ref.id``), a plain attribute for the hot path."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.ref.id)


class CorrelationType(StrEnum):
    EVENT_COUNT = "event_count"
    VALUE_COUNT = "value_count"
    TEMPORAL = "temporal"
    TEMPORAL_ORDERED = "temporal_ordered"
    VALUE_SUM = "value_sum"
    VALUE_AVG = "value_avg"


OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "eq": operator.eq,
    "neq": operator.ne,
}
"""Correlation condition operators (the C functions: they run per event)."""


@dataclass(frozen=True, slots=True, eq=False)
class CorrelationRule:
    ref: RuleRef
    name: str | None
    source: Source
    type: CorrelationType
    rules: tuple[str, ...]
    """Ids of the referenced detection rules, in the rule's order (temporal_ordered uses it)."""
    group_by: tuple[str, ...]
    group_fields: Mapping[str, tuple[str, ...]]
    """Per referenced rule id: the event field of each group-by name (aliases resolved)."""
    timespan: float
    op: str | None
    threshold: float | None
    value_field: Mapping[str, str] = field(default_factory=dict)
    """value_count/sum/avg: per referenced rule id, the event field aggregated."""
    expression: Callable[[frozenset[str]], bool] | None = None
    """temporal: which referenced rules (by id) must have been seen in the window."""
    options: RuleOptions = RuleOptions()
    content_hash: str = ""
    group_names: tuple[str, ...] = ()
    """The field names the alert gives the group's values: an alias's own name (it is the
    field the correlation defines, Sigma 2.1 ``aliases``), else the first referenced rule's
    event field. Empty: the first referenced rule's event fields (hand-built rules)."""

    id: str = field(init=False)
    """The rule's id (``ref.id``), a plain attribute for the hot path."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.ref.id)

    @property
    def has_timer(self) -> bool:
        """lt/lte/eq/neq can only be decided when a window has elapsed without events."""
        return self.op in ("lt", "lte")

    def condition_met(self, value: float) -> bool:
        assert self.op is not None and self.threshold is not None
        return OPERATORS[self.op](value, self.threshold)


Rule = DetectionRule | CorrelationRule
