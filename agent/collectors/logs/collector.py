"""Follow log files and turn their lines into events: auth logs, web access logs, audit.log.

:class:`LogTailCollector` is a streaming collector over one or more files, each followed by a
:class:`~agent.collectors.logs.tailer.FileTailer` (rotation, copytruncate, restart offsets) and
decoded by a :class:`~agent.collectors.parsers.decoders.LineDecoder`. It polls every
``poll_seconds`` (0.25 s by default: alerts are not a poll interval late, and a poll is two
``stat`` calls).

With ``watch_integrity`` (auth logs), the collector also reports what happens to the file
itself as ``vedette``/``log_integrity`` events: ``truncated`` when it shrank without a freshly
written rotated sibling (``<name>.1``: that is logrotate's copytruncate, reported as
``rotated``), and ``deleted`` when the path is gone for longer than ``deleted_grace_seconds``
(rename rotation recreates it at once).

Positions are acknowledged end to end: each poll's events go to the pipeline as one block with
the file positions reached (:func:`~agent.collectors.base.publish_acked`), and the offsets
file holds only positions the pipeline acknowledged — a ``kill -9`` re-reads what was still in
the queue instead of skipping it.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.collectors.base import AnyCollector, CollectorContext, Publish, publish_acked
from agent.collectors.logs.tailer import FileTailer, OffsetStore
from agent.collectors.parsers.decoders import AuditDecoder, LineDecoder, WebDecoder
from agent.events import Event, LogSource
from agent.metrics import AgentMetrics

LOG_INTEGRITY = LogSource("vedette", "log_integrity")
LOGIN_ACTIONS = frozenset({"ssh_login", "su", "login"})


class LogTailCollector:
    def __init__(
        self,
        name: str,
        paths: list[Path],
        decoder_for: Callable[[Path], LineDecoder],
        offsets: OffsetStore,
        metrics: AgentMetrics | None = None,
        *,
        poll_seconds: float = 0.25,
        start_at_end: bool = True,
        watch_integrity: bool = False,
        deleted_grace_seconds: float = 5.0,
        host_name: str = "",
        clock: Callable[[], float] = time.time,
        on_idle: Callable[[], None] | None = None,
        max_read_bytes: int = 16 * 1024,
    ) -> None:
        self.name = name
        self._max_read = max_read_bytes
        self._on_idle = on_idle
        self._paths = list(paths)
        self._decoder_for = decoder_for
        self._offsets = offsets
        self._metrics = metrics
        self._poll = poll_seconds
        self._start_at_end = start_at_end
        self._integrity = watch_integrity
        self._grace = deleted_grace_seconds
        self._host = host_name
        self._clock = clock
        self._tailers: dict[Path, FileTailer] = {}
        self._decoders: dict[Path, LineDecoder] = {}
        self._missing_since: dict[Path, float] = {}
        self._reported_deleted: set[Path] = set()
        self._sizes: dict[Path, int] = {}
        self._signatures: dict[Path, tuple[int, int, int] | None] = {}  # stat before last read
        self._published: dict[str, tuple[int, int]] = {}
        self._absent_at_start: set[Path] = set()  # not there at the first poll

    def run(self, publish: Publish, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                events = self.poll_once()
                moved = self._moved_positions()
                if (events or moved) and not publish_acked(
                    publish, events, functools.partial(self._acknowledged, moved),
                    self._offsets.save, stop,
                ):
                    break  # stopping: not acknowledged, read again after the restart
                if not events:
                    if self._on_idle is not None:
                        self._on_idle()
                    stop.wait(self._poll)
        finally:
            for tailer in self._tailers.values():
                tailer.close()
            self._offsets.save()  # acknowledged positions only

    def _moved_positions(self) -> dict[str, tuple[int, int]]:
        """File positions reached since the last published block."""
        moved: dict[str, tuple[int, int]] = {}
        for tailer in self._tailers.values():
            position = tailer.position()
            if position is not None and self._published.get(tailer.key) != position:
                moved[tailer.key] = position
        self._published.update(moved)
        return moved

    def _acknowledged(self, positions: dict[str, tuple[int, int]]) -> None:
        for key, (inode, offset) in positions.items():
            self._offsets.set(key, inode, offset)

    def poll_once(self) -> list[Event]:
        """Read every file once; the events of the new lines (public for tests and replay)."""
        out: list[Event] = []
        for path in self._paths:
            out.extend(self._poll_path(path))
        return out

    def _poll_path(self, path: Path) -> list[Event]:
        out: list[Event] = []
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if self._integrity:
            out.extend(self._check_presence(path, st is not None))
        tailer = self._tailers.get(path)
        signature = None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)
        if tailer is None:
            if st is None:
                self._absent_at_start.add(path)
                return out
            # start_at_end skips a file's history at the first start; a file created after
            # the agent started is new, and read from its first line
            at_end = self._start_at_end and path not in self._absent_at_start
            tailer = FileTailer(path, self._offsets, start_at_end=at_end,
                                max_read_bytes=self._max_read, remember=False)
            self._tailers[path] = tailer
            self._decoders[path] = self._decoder_for(path)
        elif signature is not None and self._signatures.get(path) == signature:
            # same file, size and mtime as when last read: nothing to read (an idle poll is
            # this one stat, not five system calls)
            out.extend(self._decoders[path].flush())
            return out
        decoder = self._decoders[path]
        before = self._sizes.get(path)
        result = tailer.read()
        if self._integrity and result.shrunk and not result.rotated:
            out.append(self._integrity_event(path, _shrink_kind(path, self._clock()), before))
        if result.truncated_lines and self._metrics is not None:
            self._metrics.input_errors.labels(decoder.source, "too_long").inc(
                result.truncated_lines)
        # remembered only after a read that found nothing: a backlog larger than one read
        # (``max_read_bytes``) is read on the next polls although the file does not change
        self._signatures[path] = None if result.lines else signature
        if result.lines:
            out.extend(decoder.feed_lines(result.lines))
        else:
            out.extend(decoder.flush())  # idle: release held-back groups (auditd)
        try:
            self._sizes[path] = os.stat(path).st_size
        except OSError:
            pass
        if self._metrics is not None and result.lines:
            self._metrics.log_lines.labels(decoder.source).inc(len(result.lines))
            for event in out:
                if event.get("event.action") in LOGIN_ACTIONS:
                    self._metrics.logins.labels(event.get("event.outcome", "unknown")).inc()
        return out

    def _check_presence(self, path: Path, exists: bool) -> list[Event]:
        if exists:
            self._missing_since.pop(path, None)
            self._reported_deleted.discard(path)
            return []
        if path not in self._tailers and path not in self._sizes:
            return []  # never seen: not a deletion
        now = self._clock()
        since = self._missing_since.setdefault(path, now)
        if now - since >= self._grace and path not in self._reported_deleted:
            self._reported_deleted.add(path)
            return [self._integrity_event(path, "deleted", self._sizes.get(path))]
        return []

    def _integrity_event(self, path: Path, action: str, previous_size: int | None) -> Event:
        fields: dict[str, Any] = {
            "event.kind": "event", "event.category": "file", "event.action": action,
            "event.dataset": "vedette.log_integrity", "log.file.path": str(path),
            "file.path": str(path),
        }
        if previous_size is not None:
            fields["vedette.log.previous_size"] = previous_size
        try:
            fields["file.size"] = os.stat(path).st_size
        except OSError:
            pass
        if self._host:
            fields["host.name"] = self._host
        return Event(self._clock(), LOG_INTEGRITY, fields)


def _shrink_kind(path: Path, now: float, window: float = 120.0) -> str:
    """``rotated`` when logrotate's copytruncate just wrote ``<name>.1``, else ``truncated``."""
    try:
        sibling = os.stat(f"{path}.1")
    except OSError:
        return "truncated"
    return "rotated" if now - sibling.st_mtime <= window else "truncated"


def input_problem(ctx: CollectorContext) -> Callable[[str, str], None]:
    """``on_problem`` for decoders: counts ``vedette_input_errors_total{source, reason}``."""
    def count(source: str, reason: str) -> None:
        ctx.metrics.input_errors.labels(source, reason).inc()
    return count


def build_web_logs(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``web_logs`` section: access logs followed with the web decoder."""
    section = ctx.config.web_logs
    if not section.enabled or not section.paths:
        return []
    problem = input_problem(ctx)

    def decoder(path: Path) -> LineDecoder:
        return WebDecoder(path=str(path), on_problem=problem)

    return [LogTailCollector(
        "web_logs", list(section.paths), decoder,
        OffsetStore(
            ctx.state_dir / "offsets-web-logs.json", on_problem=ctx.state_problem), ctx.metrics,
        poll_seconds=section.poll_interval_seconds, start_at_end=section.start_at_end,
        host_name=ctx.identity.host_name)]


def build_auditd(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``auditd`` section: audit.log, when it exists or its path was configured."""
    section = ctx.config.auditd
    configured = "path" in section.model_fields_set
    if not section.enabled or not (section.path.exists() or configured):
        return []  # the default path without auditd installed: nothing to follow
    problem = input_problem(ctx)

    def decoder(path: Path) -> LineDecoder:
        return AuditDecoder(on_problem=problem)

    return [LogTailCollector(
        "auditd", [section.path], decoder, OffsetStore(
            ctx.state_dir / "offsets-auditd.json", on_problem=ctx.state_problem),
        ctx.metrics, poll_seconds=section.poll_interval_seconds,
        start_at_end=section.start_at_end, host_name=ctx.identity.host_name)]
