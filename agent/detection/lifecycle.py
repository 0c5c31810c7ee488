"""Alert lifecycle per (rule, group): open → updated → closed, with suppression.

One :class:`AlertBook` per rule. A trigger (a single-event match or a correlation firing) opens
an alert when none is open for its group, otherwise it is folded into the open alert (``count``,
``last_seen``, a bounded evidence sample). Updates are re-sent at most every
``update_interval`` seconds — one ongoing attack is one alert updated, not thousands — and the
final state is sent when the alert closes after ``quiet_period`` seconds without triggers.

Suppression: a group whose alert closed less than ``cooldown`` seconds ago does not open a new
one, and a rule may open at most ``max_alerts_per_minute`` alerts; triggers dropped by either are
counted in :attr:`AlertBook.dropped` (the engine raises a meta-alert when that grows fast). Open
alerts beyond ``max_groups`` are closed oldest-first.

A ``critical`` rule (a reverse shell, a web shell: a technique repeated is not noise) is never
silenced: during its group's cooldown a new trigger opens a new alert, and past the per-minute
cap it is folded into the rule's most recent open alert (``count``, evidence) instead of being
dropped (counted in :attr:`AlertBook.folded`).

The hand-off: the engine collects what one event triggered — single-event matches and
correlation firings, in rule order — and hands them over in ONE call, :meth:`AlertBook.apply`,
each tagged with its :class:`Source` (the rule's book and what an opening alert copies from the
event). The books apply them in order — a later trigger sees the alert an earlier one opened;
the books alone own that state — and each state change renders one snapshot
(:meth:`~agent.alerts.Alert.snapshot`). Correlation state never reads or writes a book.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.alerts import Alert, RuleRef, Status, alert_id
from agent.detection.correlation import Firing
from agent.detection.rule import RuleOptions
from agent.events import Event

MAX_EVIDENCE = 10


@dataclass(slots=True)
class _Open:
    alert: Alert
    last_emit: float
    dirty: bool = False


class Source:
    """Where a book's triggers come from: one single-event rule, or one correlation fed by one
    base rule (what :meth:`AlertBook.apply` needs to open an alert from the event)."""

    __slots__ = ("book", "describe", "group_by", "pick")

    def __init__(
        self, book: AlertBook, pick: tuple[str, ...], group_by: tuple[str, ...] = (),
        describe: Callable[[Firing], str] | None = None,
    ) -> None:
        self.book = book
        self.pick = pick
        """Event fields an opening alert copies into ``matched`` (when present)."""
        self.group_by = group_by
        """Single-event rules: the fields that key the rule's alerts."""
        self.describe = describe
        """Correlations: the message of an alert a firing opens."""


Fired = Firing | tuple[Any, ...] | None
"""What an event triggered for one :class:`Source`: ``None`` — a single-event match; a
:class:`Firing`; or a group key — the group's condition stays true (more of its open alert,
if one is open: a :class:`Firing` not ``opened`` means the same)."""

Triggers = list[tuple[Source, Fired]]


class AlertBook:
    def __init__(
        self, ref: RuleRef, options: RuleOptions, max_evidence: int = MAX_EVIDENCE
    ) -> None:
        self.ref = ref
        self.options = options
        self.max_evidence = max_evidence
        self.open: OrderedDict[Any, _Open] = OrderedDict()
        self.cooldown_until: OrderedDict[Any, float] = OrderedDict()
        self.opened_at: deque[float] = deque()
        self.dropped = 0
        """Triggers dropped by cooldown or the per-minute cap (never reset; engine diffs it)."""
        self.coalesced = 0
        """Updates folded into an open alert without being sent."""
        self.evicted = 0
        self.folded = 0
        """Triggers of a critical rule past the per-minute cap, folded into an open alert."""
        self.critical = ref.level == "critical"

    def __len__(self) -> int:
        return len(self.open)

    # ------------------------------------------------------------------ the hand-off

    @staticmethod
    def apply(triggers: Triggers, event: Event) -> list[Alert]:
        """Fold what ``event`` triggered into the books, in order; the snapshots to send."""
        out: list[Alert] = []
        for source, fired in triggers:
            book = source.book
            if fired is None:
                alerts = book._matched(source, event)
            elif type(fired) is tuple:
                entry = book.open.get(fired)
                if entry is None:
                    continue
                alert = entry.alert
                ts = event.timestamp
                if ts - entry.last_emit >= book.options.update_interval:
                    alerts = book._more(fired, event)
                else:  # the hot path of a flood: _more() and grow() without a re-send
                    book.open.move_to_end(fired)
                    alert.count += 1
                    if ts > alert.last_seen:
                        alert.last_seen = ts
                    elif ts < alert.first_seen:
                        alert.first_seen = ts
                    if len(alert.evidence) < book.max_evidence:
                        alert.evidence.append(event.to_dict())
                    entry.dirty = True
                    book.coalesced += 1
                    continue
            else:
                assert isinstance(fired, Firing)
                if fired.opened:
                    alerts = book._fired(source, fired, event)
                else:
                    alerts = book._more(fired.key, event)
            if alerts:
                out += alerts
        return out

    def _sample(self, entry: _Open | None, event: Event) -> dict[str, Any] | None:
        """The event as evidence, unless the open alert's sample is full."""
        if entry is None or len(entry.alert.evidence) < self.max_evidence:
            return event.to_dict()
        return None

    def _matched(self, source: Source, event: Event) -> list[Alert]:
        """A single-event rule matched ``event``."""
        fields = event.fields
        names = source.group_by
        if not names:  # hot path: one alert per rule, usually open already
            entry = self.open.get(())
            if entry is not None:
                sample = (event.to_dict() if len(entry.alert.evidence) < self.max_evidence
                          else None)
                return self.grow((), entry, event.timestamp, 1, sample)
        key = tuple(str(fields.get(f)) for f in names) if names else ()
        group = {f: fields.get(f) for f in names}
        entry = self.open.get(key)
        matched = pick(fields, source.pick) if entry is None else {}
        return self.trigger(key, group, event.timestamp, event.timestamp, 1, matched,
                            self._sample(entry, event))

    def _more(self, key: tuple[Any, ...], event: Event) -> list[Alert]:
        """A correlation group's condition stays true: more of its open alert, if any (the
        message keeps the value that opened it). :meth:`apply` inlines the case where no
        re-send is due."""
        entry = self.open.get(key)
        if entry is None:
            return []
        sample = event.to_dict() if len(entry.alert.evidence) < self.max_evidence else None
        return self.grow(key, entry, event.timestamp, 1, sample)

    def _fired(self, source: Source, firing: Firing, event: Event) -> list[Alert]:
        """A correlation group's condition became true at ``event``."""
        entry = self.open.get(firing.key)
        matched = pick(event.fields, source.pick) if entry is None else {}
        matched.update(firing.group)
        message = source.describe(firing) if source.describe is not None else ""
        return self.trigger(firing.key, firing.group, event.timestamp, firing.window_start,
                            firing.count, matched, self._sample(entry, event), message)

    # ------------------------------------------------------------------ lifecycle

    def trigger(
        self,
        key: Any,
        group: dict[str, Any],
        ts: float,
        window_start: float,
        count: int,
        matched: dict[str, Any],
        evidence: dict[str, Any] | None,
        message: str = "",
        new_window: bool = True,
    ) -> list[Alert]:
        """Fold one trigger in; returns the snapshots to send (usually none or one)."""
        opts = self.options
        entry = self.open.get(key)
        if entry is not None:
            return self.grow(key, entry, ts, count, evidence, message)
        if not new_window:
            return []
        until = self.cooldown_until.get(key)
        if until is not None:
            if ts < until and not self.critical:
                self.dropped += 1
                return []
            del self.cooldown_until[key]
        while self.opened_at and self.opened_at[0] <= ts - 60.0:
            self.opened_at.popleft()
        if len(self.opened_at) >= opts.max_alerts_per_minute:
            if self.critical and self.open:
                self.folded += 1
                last_key = next(reversed(self.open))
                return self.grow(last_key, self.open[last_key], ts, count, evidence)
            if not self.critical:
                self.dropped += 1
                return []
        self.opened_at.append(ts)
        alert = Alert(
            id=alert_id(self.ref.id, group, window_start),
            rule=self.ref,
            group=dict(group),
            first_seen=min(ts, window_start),
            last_seen=ts,
            count=count,
            status=Status.OPEN,
            matched=dict(matched),
            evidence=[evidence] if evidence is not None else [],
            message=message or self.ref.title,
        )
        out: list[Alert] = []
        self.open[key] = _Open(alert, ts)
        if len(self.open) > opts.max_groups:
            old_key, oldest = self.open.popitem(last=False)
            self.evicted += 1
            out.append(self._finish(old_key, oldest, oldest.alert.last_seen))
        out.append(alert.snapshot())
        return out

    def grow(
        self, key: Any, entry: _Open, ts: float, count: int,
        evidence: dict[str, Any] | None, message: str = "",
    ) -> list[Alert]:
        """More of an open alert; re-sent only when ``update_interval`` has passed."""
        self.open.move_to_end(key)
        alert = entry.alert
        alert.count += count
        if ts > alert.last_seen:  # noqa: PLR1730 - hot path, no max() call
            alert.last_seen = ts
        if ts < alert.first_seen:  # noqa: PLR1730
            alert.first_seen = ts
        if evidence is not None and len(alert.evidence) < self.max_evidence:
            alert.evidence.append(evidence)
        if message:
            alert.message = message
        if ts - entry.last_emit >= self.options.update_interval:
            return [self._emit(entry, ts)]
        entry.dirty = True
        self.coalesced += 1
        return []

    def _emit(self, entry: _Open, now: float) -> Alert:
        entry.alert.status = Status.UPDATED
        entry.alert.revision += 1
        entry.last_emit = now
        entry.dirty = False
        return entry.alert.snapshot()

    def _finish(self, key: Any, entry: _Open, now: float) -> Alert:
        """Mark a (removed) open alert closed and start its group's cooldown."""
        entry.alert.status = Status.CLOSED
        entry.alert.revision += 1
        if self.options.cooldown > 0:
            self.cooldown_until[key] = now + self.options.cooldown
            while len(self.cooldown_until) > self.options.max_groups:
                self.cooldown_until.popitem(last=False)
        return entry.alert.snapshot()

    def tick(self, now: float) -> list[Alert]:
        """Close quiet alerts and send pending updates whose interval has passed."""
        out: list[Alert] = []
        quiet = self.options.quiet_period
        interval = self.options.update_interval
        for key, entry in list(self.open.items()):
            if now - entry.alert.last_seen >= quiet:
                del self.open[key]
                out.append(self._finish(key, entry, now))
            elif entry.dirty and now - entry.last_emit >= interval:
                out.append(self._emit(entry, now))
        return out

    def export_open(self) -> list[tuple[Any, Alert, float, bool]]:
        """The open alerts as ``(key, alert, last_emit, dirty)`` (for the checkpoint)."""
        return [(key, e.alert, e.last_emit, e.dirty) for key, e in self.open.items()]

    def restore_open(self, entries: list[tuple[Any, Alert, float, bool]]) -> int:
        """Put checkpointed open alerts back (after a restart); those already open (the same
        key) are kept as they are. Returns how many were restored."""
        restored = 0
        for key, alert, last_emit, dirty in entries:
            if key in self.open or len(self.open) >= self.options.max_groups:
                continue
            alert.rule = self.ref
            self.open[key] = _Open(alert, last_emit, dirty)
            restored += 1
        return restored

    def close_all(self, now: float) -> list[Alert]:
        items = list(self.open.items())
        self.open.clear()
        return [self._finish(k, e, now) for k, e in items]


def pick(fields: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The present values of ``names`` in ``fields``."""
    out: dict[str, Any] = {}
    for name in names:
        value = fields.get(name)
        if value is not None:
            out[name] = value
    return out
