"""The sink interface and the registry that maps a config section to its sink class.

A sink receives alert snapshots (every open, update and close of an alert) through
:meth:`Sink.emit`. ``emit`` may raise: the :class:`~agent.sinks.router.AlertRouter` keeps the
alert in a bounded retry buffer for that sink, counts the failure and tries again on its next
flush, so one broken sink never blocks the others or takes the agent down. A sink that needs
durability beyond that (Elasticsearch) owns its own disk spool and returns from ``emit`` once
the alert is safely on disk.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agent.alerts import Alert
from agent.events import Event


@runtime_checkable
class Sink(Protocol):
    name: str

    def emit(self, alert: Alert) -> None:
        """Take one alert snapshot; raise on failure (the router retries)."""

    def flush(self) -> None:
        """Make everything emitted so far durable/visible (called periodically and at exit)."""

    def close(self) -> None:
        """Flush and release resources; called once at shutdown or when config changes."""


@runtime_checkable
class EventSink(Protocol):
    """A sink that can also take raw events (Elasticsearch's optional event shipping)."""

    @property
    def wants_events(self) -> bool:
        """False when configured not to ship events: the router then never offers any."""

    def emit_event(self, event: Event) -> bool:
        """Keep or skip one event (the sink applies its own sampling); never blocks long."""
