"""Memoised matches: a route's results keyed on the values of the fields its rules read.

Compiled predicates are pure functions of the event fields their rules look at, so two events
with identical values (and identical types — ``True == 1`` in Python, but not for Sigma) match
the same rules. Repetitive streams (cron jobs, the packets of one flow, the same admin commands)
then skip candidate selection and predicate evaluation. The cache is bounded in entries and in
text kept alive, and switches itself off for a while when too few lookups hit.
"""

from __future__ import annotations

from typing import Any

from agent.detection.keys import typed_values_of, values_of
from agent.detection.probe import prober
from agent.detection.rule import DetectionRule
from agent.detection.ruleset import Route

CACHEABLE = frozenset({str, int, float, bool, type(None)})
MAX_CACHED_ROUTES = 64
MATCH_CACHE_ENTRIES = 4096
MATCH_CACHE_CHARS = 1 << 20
"""Text kept alive by one route's match cache; long values are not cached."""


class RouteState:
    """A route and the memoised matches of recently seen field values (bounded).

    The engine looks ``key_of(fields)`` up in ``cache`` (a ``TypeError`` means an unhashable
    value: no caching), counts a hit itself and calls :meth:`missed` after evaluating a miss.
    The cache switches itself off for a while when fewer than a third of lookups hit (streams
    of unique command lines), so it never costs much more than it saves.
    """

    __slots__ = ("_values_of", "cache", "caching", "candidates", "chars", "empty", "hits",
                 "key_of", "misses", "route", "skipped")

    REVIEW_EVERY = 4096
    PAUSE = 65536
    MIN_HIT_RATE = 0.33

    def __init__(self, route: Route) -> None:
        self.route = route
        self.empty = route.empty
        self.candidates = prober(route)
        """The rules an event could match (per-field memos: one per engine)."""
        self.cache: dict[Any, list[DetectionRule]] = {}
        self.key_of = typed_values_of(route.fields)
        """Values of the route's fields followed by their types (``True`` is not ``1``)."""
        self._values_of = values_of(route.fields)
        self.chars = 0
        self.caching = bool(route.fields)
        self.hits = 0
        self.misses = 0
        self.skipped = 0

    def missed(self, key: Any, fields: dict[str, Any], matched: list[DetectionRule]) -> None:
        """A lookup of ``key`` (``None``: unhashable) missed and evaluated to ``matched``."""
        if key is not None:
            size = 0
            for value in self._values_of(fields):
                kind = value.__class__
                if kind is str:
                    size += len(value)
                elif kind not in CACHEABLE:  # containers may hold True where 1 was cached
                    size = -1
                    break
            if 0 <= size <= MATCH_CACHE_CHARS // 256:
                self._remember(key, size, matched)
        self.misses += 1
        lookups = self.hits + self.misses
        if lookups >= self.REVIEW_EVERY:
            if self.hits < self.MIN_HIT_RATE * lookups:
                self.caching = False
                self.cache.clear()
                self.chars = 0
            self.hits = self.misses = 0

    def resume(self) -> None:
        """Try caching again after a pause (the engine counts ``skipped``)."""
        self.caching = True
        self.skipped = 0

    def _remember(self, key: Any, size: int, matched: list[DetectionRule]) -> None:
        cache = self.cache
        if len(cache) >= MATCH_CACHE_ENTRIES or self.chars + size > MATCH_CACHE_CHARS:
            # Start over rather than evict one by one: popping the oldest key of a dict leaves
            # deleted slots that later iterations must skip (FIFO on a dict degrades).
            cache.clear()
            self.chars = 0
        cache[key] = matched
        self.chars += size
