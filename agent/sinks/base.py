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


@runtime_checkable
class Sink(Protocol):
    name: str

    def emit(self, alert: Alert) -> None:
        """Take one alert snapshot; raise on failure (the router retries)."""

    def flush(self) -> None:
        """Make everything emitted so far durable/visible (called periodically and at exit)."""

    def close(self) -> None:
        """Flush and release resources; called once at shutdown or when config changes."""
