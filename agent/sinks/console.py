"""Console feedback for a human running ``vedette run`` in a terminal.

One readable line per new alert on stdout — local time with its zone, level, rule title and the
alert's key fields — and, at start-up, one line saying where alerts go. Only for an interactive
foreground run: off with ``--quiet``, under systemd (``JOURNAL_STREAM``/``INVOCATION_ID``), when
stdout is not a terminal, and when the stdout JSON sink already writes there
(:func:`console_wanted`). Every value comes from events an attacker may shape, so each is
escaped (:func:`agent.logs.safe`) and bounded.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from agent.alerts import Alert, Status
from agent.config import Config, mask_url
from agent.logs import safe

MAX_FIELDS = 4
MAX_VALUE = 80
# Matched fields worth a place on the line when the alert has no group-by (most specific first).
KEY_FIELDS = ("user.name", "source.ip", "destination.ip", "destination.port",
              "process.executable", "process.command_line", "file.path", "url.original",
              "dns.question.name", "host.name")


def under_systemd(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("JOURNAL_STREAM") or environ.get("INVOCATION_ID"))


def console_wanted(config: Config, quiet: bool, environ: Mapping[str, str],
                   stream: TextIO) -> bool:
    """Whether this run talks to a human: a terminal, not systemd, not --quiet."""
    if quiet or under_systemd(environ) or config.sinks.stdout.enabled:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def alert_line(alert: Alert) -> str:
    fields: dict[str, Any] = dict(alert.group)
    first = alert.evidence[0] if alert.evidence and isinstance(alert.evidence[0], dict) else {}
    for name in KEY_FIELDS:
        if len(fields) >= MAX_FIELDS:
            break
        value = alert.matched.get(name, first.get(name))
        if value is not None and name not in fields:
            fields[name] = value
    shown = " ".join(f"{safe(k, 40)}={safe(v, MAX_VALUE)}"
                     for k, v in list(fields.items())[:MAX_FIELDS])
    count = f" (x{alert.count})" if alert.count > 1 else ""
    return (f"{format_time(alert.first_seen)}  {alert.rule.level.upper():<8} "
            f"{safe(alert.rule.title, 100)}{count}  {shown}").rstrip()


class ConsoleSink:
    """Prints a line when an alert opens (updates and closes stay in the real sinks)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, alert: Alert) -> None:
        if alert.status is not Status.OPEN or alert.revision != 0:
            return
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(alert_line(alert) + "\n")
            stream.flush()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def destinations(config: Config) -> str:
    """Where alerts go, for the start-up line."""
    out: list[str] = []
    jsonl = config.sinks.jsonl
    if jsonl.enabled:
        path = jsonl.path or config.agent.resolved_state_dir() / "alerts.jsonl"
        out.append(f"{path} (JSON lines)")
    if config.sinks.stdout.enabled:
        out.append("stdout (ECS JSON)")
    if config.elasticsearch.hosts:
        hosts = ", ".join(mask_url(h) for h in config.elasticsearch.hosts)
        out.append(f"Elasticsearch {hosts} (data stream logs-vedette.alerts-"
                   f"{config.elasticsearch.namespace}, through the disk spool)")
    return "; ".join(out) or "nowhere (every sink is disabled)"
