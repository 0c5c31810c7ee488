"""Offline detection on the events' own clock: the driver of ``vedette replay``.

``vedette replay FILE`` (:mod:`agent.commands.replay`) opens its input through
:data:`agent.offline.inputs.INPUTS` and hands the events to :func:`run`.

Time is the events' own: before each event the engine's timers run up to its timestamp, and
after the last one far enough ahead that every alert reaches its final state — exactly how
``vedette rules test`` drives the engine, and the same engine the daemon runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.alerts import Alert
from agent.detection.engine import Engine
from agent.events import Event


@dataclass
class ReplayResult:
    events: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)
    """Final state of every alert, by alert id, in the order they opened."""
    updates: int = 0
    last_ts: float | None = None


def run(
    engine: Engine,
    events: Iterable[Event],
    horizon: float,
    on_alert: Callable[[Alert], None] | None = None,
    tick: float = 1.0,
) -> ReplayResult:
    """Drive ``engine`` with ``events`` on their own clock; every alert update is kept.

    The engine's timers run every ``tick`` seconds of event time (the daemon runs them every
    ``pipeline.tick_seconds`` of wall time), and once more ``horizon`` seconds after the last
    event so every alert reaches its final state.
    """
    result = ReplayResult()
    clock: float | None = None
    next_tick = float("-inf")

    def keep(alerts: list[Alert]) -> None:
        for alert in alerts:
            result.alerts[alert.id] = alert
            result.updates += 1
            if on_alert is not None:
                on_alert(alert)

    for event in events:
        result.events += 1
        ts = event.timestamp
        if clock is None or ts > clock:
            clock = ts
            if ts >= next_tick:
                keep(engine.advance(ts))
                next_tick = ts + tick
        keep(engine.process(event))
    if clock is not None:
        keep(engine.advance(clock + horizon))
    result.last_ts = clock
    return result
