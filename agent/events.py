"""The one event shape every collector produces and every rule reads.

An :class:`Event` is a flat mapping of ECS dotted field names (``source.ip``,
``process.executable``, ``event.dataset`` …) plus the Sigma logsource it belongs to, so the
detection engine can route it to the rules that may match. Event time is a float of epoch
seconds (``timestamp``); ``@timestamp`` is rendered from it only when an event leaves the agent.
The field catalogue lives in ``docs/events.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple


class LogSource(NamedTuple):
    """Sigma logsource triple; ``None`` means "not set" exactly as in Sigma."""

    product: str | None
    category: str | None = None
    service: str | None = None

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self._asdict().items() if v is not None]
        return "/".join(parts) or "any"


@dataclass(slots=True)
class Event:
    """One observation: event time, logsource and flat ECS fields."""

    timestamp: float
    logsource: LogSource
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready mapping, as written to fixtures and shipped raw."""
        out: dict[str, Any] = {"@timestamp": format_timestamp(self.timestamp)}
        out.update(self.fields)
        out["logsource"] = {k: v for k, v in self.logsource._asdict().items() if v is not None}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed mapping."""
        if not isinstance(data, dict):
            raise ValueError("an event must be a JSON object")
        fields = dict(data)
        raw_ts = fields.pop("@timestamp", None)
        if raw_ts is None:
            raise ValueError("event has no @timestamp")
        ls = fields.pop("logsource", None)
        if not isinstance(ls, dict) or not ls:
            raise ValueError("event has no logsource object")
        unknown = set(ls) - {"product", "category", "service"}
        if unknown:
            raise ValueError(f"unknown logsource keys: {sorted(unknown)}")
        if any(v is not None and not isinstance(v, str) for v in ls.values()):
            raise ValueError("logsource values must be strings")
        logsource = LogSource(ls.get("product"), ls.get("category"), ls.get("service"))
        return cls(parse_timestamp(raw_ts), logsource, fields)


def format_timestamp(ts: float) -> str:
    """Epoch seconds → RFC 3339 UTC with microseconds (what Elasticsearch's ``date`` takes)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )


def parse_timestamp(value: Any) -> float:
    """Accept epoch seconds (int/float) or an ISO 8601 string; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"bad timestamp: {value!r}")
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:  # an int beyond float range
            raise ValueError(f"bad timestamp: {value!r:.64}") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"bad timestamp: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            ts = parsed.timestamp()
        except (OverflowError, ValueError):
            raise ValueError(f"bad timestamp: {value[:64]!r}") from None
    else:
        raise ValueError(f"bad timestamp: {value!r}")
    if not math.isfinite(ts) or not _MIN_TS <= ts <= _MAX_TS:
        # outside years 1-9999 format_timestamp could not render it back
        raise ValueError(f"bad timestamp: {value!r:.64}")
    return ts


_MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


# Logsources Vedette produces. Rules for any other logsource are rejected at load time.
PROCESS_CREATION = LogSource("linux", "process_creation")
NETWORK_CONNECTION = LogSource("linux", "network_connection")
FILE_EVENT = LogSource("linux", "file_event")
HOST_METRICS = LogSource("vedette", "host_metrics")
