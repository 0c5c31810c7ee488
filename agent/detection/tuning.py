"""Tuning: silence matches of loaded rules without editing them (docs/tuning.md).

Three ways, applied to the compiled rule set:

* **Sigma filters** (:mod:`agent.detection.filters`, files in the rule folders);
* ``detection.trusted_sources``: events whose field (``source.ip`` by default) is in a list of
  networks or equals one of a list of values, for every rule or for the rules named;
* ``detection.disabled_rules``: rules removed from the rule set (never evaluated). Disabling a
  base rule also disables the correlations that count it (their meaning would change, e.g. a
  ``temporal`` ``a and not b``); disabling a correlation leaves its silent base rules unused.

Filters and trusted sources run in the engine after a detection rule matched an event and
before the match opens an alert or feeds a correlation: :meth:`Tuning.admit` is the engine's
one hook. A trusted source or filter naming a correlation applies to the base rules it counts.
Every silenced match is counted per rule (``vedette_rule_matches_silenced_total{rule,
reason}``, label values only for loaded rules).

Unknown rule ids or names in the configuration are reported as notes, not errors: a rule removed
by an upgrade must not stop a fleet from starting (filters, which live beside the rules, make
unknown references errors).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.detection.codegen import Predicate
from agent.detection.filters import FilterSet
from agent.detection.matcher import Lowered
from agent.detection.rule import CorrelationRule, DetectionRule, Rule
from agent.detection.ruleset import Ruleset
from agent.events import Event

FILTER = "filter"
TRUSTED = "trusted_source"
MAX_CACHED_ADDRESSES = 4096


class _Networks:
    """Membership of a field's text in a set of networks.

    Addresses are parsed with ``inet_pton`` (one C call, strict dotted quads and RFC 4291
    text) and compared as integers under each network's mask; ``ipaddress.ip_address`` costs
    about ten times more, and a trusted-source check runs on every matched event, which in a
    flood of spoofed sources is a new address each time. Results are cached per text (bounded).
    """

    def __init__(self, cidrs: Iterable[str]) -> None:
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self.v4 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)
        self.v6 = tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 6)
        self._cache: dict[str, bool] = {}

    def __call__(self, value: str) -> bool:
        hit = self._cache.get(value)
        if hit is not None:
            return hit
        found = self._lookup(value)
        if len(self._cache) >= MAX_CACHED_ADDRESSES:
            self._cache.clear()
        self._cache[value] = found
        return found

    def _lookup(self, value: str) -> bool:
        try:
            ip = int.from_bytes(socket.inet_pton(socket.AF_INET, value), "big")
            nets = self.v4
        except OSError:
            try:
                ip = int.from_bytes(socket.inet_pton(socket.AF_INET6, value.split("%", 1)[0]),
                                    "big")
            except (OSError, ValueError):
                return False
            nets = self.v6
        return any(ip & mask == net for net, mask in nets)


@dataclass(frozen=True, slots=True)
class Trusted:
    """One ``trusted_sources`` entry, compiled."""

    field: str
    test: Any  # Callable[[str], bool]
    rules: frozenset[str] | None
    """Detection rule ids it applies to; ``None``: every rule."""

    def matches(self, fields: dict[str, Any]) -> bool:
        value = fields.get(self.field)
        if value.__class__ is str:  # the usual case, first (a matched event's hot path)
            return bool(self.test(value))
        if value is None:
            return False
        if isinstance(value, list | tuple):
            return any(self.test(str(v)) for v in value)
        return bool(self.test(str(value)))


@dataclass
class Tuning:
    """What the engine checks for a matched rule before it alerts or counts."""

    filters: dict[str, tuple[tuple[str, Predicate], ...]] = field(default_factory=dict)
    trusted: tuple[Trusted, ...] = ()
    disabled: frozenset[str] = frozenset()
    """Ids of the loaded rules removed by ``detection.disabled_rules`` (for the gauge)."""
    silenced: dict[tuple[str, str], int] = field(default_factory=dict)
    """(rule id, reason) → matches silenced so far (also in the metric, when bound)."""
    _counters: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _watched: frozenset[str] | None = field(default=None, repr=False)
    _global: tuple[Trusted, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._global = tuple(t for t in self.trusted if t.rules is None)
        if self._global:
            self._watched = None  # every rule
        else:
            ids: set[str] = set(self.filters)
            for t in self.trusted:
                ids |= t.rules or set()
            self._watched = frozenset(ids)

    @property
    def active(self) -> bool:
        return bool(self.filters or self.trusted)

    def bind(self, metrics: Any, rule_ids: Iterable[str]) -> None:
        """Count silenced matches in ``metrics`` (label values: the loaded ``rule_ids``)."""
        if metrics is None:
            return
        counter = metrics.rule_matches_silenced
        for rid in rule_ids:
            if rid in self.filters:
                self._counters[(rid, FILTER)] = counter.labels(rule=rid, reason=FILTER)
            if self._global or any(t.rules and rid in t.rules for t in self.trusted):
                self._counters[(rid, TRUSTED)] = counter.labels(rule=rid, reason=TRUSTED)

    def admit(self, matched: list[DetectionRule], event: Event) -> list[DetectionRule]:
        """The matched rules whose match stands (the engine's hook; a new list if any fell)."""
        watched = self._watched
        if watched is not None and not watched:  # only disabled rules: nothing to check
            return matched
        out: list[DetectionRule] | None = None
        for i, rule in enumerate(matched):
            if (watched is None or rule.id in watched) and not self._passes(rule.id, event):
                if out is None:
                    out = matched[:i]
                continue
            if out is not None:
                out.append(rule)
        return matched if out is None else out

    def _passes(self, rule_id: str, event: Event) -> bool:
        fields = event.fields
        for t in self._global:
            if t.matches(fields):
                self._count(rule_id, TRUSTED)
                return False
        for t in self.trusted:
            if t.rules is not None and rule_id in t.rules and t.matches(fields):
                self._count(rule_id, TRUSTED)
                return False
        filters = self.filters.get(rule_id)
        if filters:
            low = Lowered(fields)
            for _fid, pred in filters:
                if not pred(fields, low):
                    self._count(rule_id, FILTER)
                    return False
        return True

    def _count(self, rule_id: str, reason: str) -> None:
        key = (rule_id, reason)
        self.silenced[key] = self.silenced.get(key, 0) + 1
        counter = self._counters.get(key)
        if counter is not None:
            counter.inc()


# ---------------------------------------------------------------------------- building


def resolve(refs: Iterable[str], ruleset: Ruleset) -> tuple[list[Rule], list[str]]:
    """Rules named by id or name, and the references that name nothing loaded."""
    names = {r.name: r for r in ruleset.rules() if r.name}
    found: list[Rule] = []
    unknown: list[str] = []
    for ref in refs:
        rule = ruleset.by_id.get(ref) or names.get(ref)
        if rule is None:
            unknown.append(ref)
        else:
            found.append(rule)
    return found, unknown


def _detection_ids(rules: Iterable[Rule], ruleset: Ruleset) -> set[str]:
    """Detection rule ids for rules named by a user: correlations stand for their base rules."""
    out: set[str] = set()
    for rule in rules:
        if isinstance(rule, CorrelationRule):
            out.update(r for r in rule.rules if r in ruleset.by_id)
        else:
            out.add(rule.id)
    return out


@dataclass
class Tuned:
    ruleset: Ruleset
    notes: list[str] = field(default_factory=list)
    disabled: frozenset[str] = frozenset()
    """Ids of the rules removed (named, or correlations counting a named rule)."""


def with_filters(ruleset: Ruleset, filters: FilterSet, exclude: frozenset[str] = frozenset()
                 ) -> Ruleset:
    """``ruleset`` carrying the compiled filters (all but ``exclude``d filter ids)."""
    by_rule = filters.by_rule(exclude)
    old = ruleset.tuning
    tuning = Tuning(by_rule, old.trusted if old else (), old.disabled if old else frozenset())
    return _rebuild(ruleset.detections, ruleset.correlations, tuning)


def apply_config(
    ruleset: Ruleset, disabled_rules: Sequence[str], trusted_sources: Sequence[Any],
    metrics: Any = None,
) -> Tuned:
    """Apply ``detection.disabled_rules`` and ``detection.trusted_sources`` to a loaded set.

    ``trusted_sources`` items have ``field``, ``cidrs``, ``values`` and ``rules`` (the config
    model :class:`agent.config.TrustedSource`). Returns the new rule set and notes.
    """
    notes: list[str] = []
    found, unknown = resolve(disabled_rules, ruleset)
    notes += [f"detection.disabled_rules: no loaded rule {ref!r}" for ref in unknown]
    off = {r.id for r in found}
    for corr in ruleset.correlations:  # a correlation whose base is disabled goes with it
        hit = [r for r in corr.rules if r in off and r != corr.id]
        if hit and corr.id not in off:
            off.add(corr.id)
            notes.append(f"detection.disabled_rules: correlation {corr.ref.title!r} disabled "
                         "too (it counts a disabled rule)")
    detections = tuple(d for d in ruleset.detections if d.id not in off)
    correlations = tuple(c for c in ruleset.correlations if c.id not in off)
    kept = Ruleset(detections, correlations)
    trusted: list[Trusted] = []
    for i, entry in enumerate(trusted_sources):
        test: Any = _Networks(entry.cidrs) if entry.cidrs else frozenset(entry.values).__contains__
        rules: frozenset[str] | None = None
        if entry.rules:
            named, missing = resolve(entry.rules, kept)
            notes += [f"detection.trusted_sources.{i}.rules: no loaded (enabled) rule {ref!r}"
                      for ref in missing]
            rules = frozenset(_detection_ids(named, kept))
        trusted.append(Trusted(entry.field, test, rules))
    old = ruleset.tuning
    filters = {k: v for k, v in (old.filters if old else {}).items() if k not in off}
    tuning = Tuning(filters, tuple(trusted), frozenset(off))
    out = _rebuild(detections, correlations, tuning)
    tuning.bind(metrics, out.by_id)
    return Tuned(out, notes, frozenset(off))


def disabled_count(ruleset: Ruleset) -> int:
    """Loaded rules the running set leaves out (``vedette_rules_disabled``, read at scrape)."""
    return len(ruleset.tuning.disabled) if ruleset.tuning is not None else 0


def _rebuild(detections: tuple[DetectionRule, ...], correlations: tuple[CorrelationRule, ...],
             tuning: Tuning) -> Ruleset:
    """A new set (its routes are built for the new rules); no tuning object when idle."""
    idle = not (tuning.active or tuning.disabled)
    return Ruleset(detections, correlations, tuning=None if idle else tuning)
