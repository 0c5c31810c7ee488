"""Offline analysis: a capture or log file through the production decode → events → detection path.

``vedette replay FILE`` (see :mod:`agent.commands.replay`) uses this module. Inputs are chosen
through :data:`INPUTS`, a registry of *kind → decoder*; a decoder takes the file, the loaded
config and an optional progress callback and yields events in file order. ``pcap`` (pcap and
pcapng, :mod:`agent.netevents.pcap_input`) is built in, and every log kind of
:data:`agent.collectors.parsers.decoders.DECODERS` is registered too, so ``--log auth`` works. A new
input kind is one line: ``INPUTS["kind"] = decoder``.

Time is the events' own: before each event the engine's timers run up to its timestamp, and
after the last one far enough ahead that every alert reaches its final state — exactly how
``vedette rules test`` drives the engine, and the same engine the daemon runs.

Rule fixtures use the same pcap decoder: :mod:`agent.detection.fixtures` registers
:data:`agent.netevents.pcap_input.PCAP_DECODERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.alerts import Alert
from agent.collectors.parsers.decoders import DECODERS as LOG_DECODERS
from agent.config import Config
from agent.detection.engine import Engine
from agent.events import Event
from agent.netevents.pcap_input import Progress, pcap_events

InputDecoder = Callable[[Path, Config, Progress | None], Iterator[Event]]


def _log_input(decoder: Callable[[Path], Iterator[Event]]) -> InputDecoder:
    def run(path: Path, config: Config, progress: Progress | None = None) -> Iterator[Event]:
        return decoder(path)

    return run


INPUTS: dict[str, InputDecoder] = {"pcap": pcap_events}
INPUTS.update({kind: _log_input(dec) for kind, dec in LOG_DECODERS.items()})


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
