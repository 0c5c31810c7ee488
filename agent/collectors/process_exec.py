"""Process executions as ``linux``/``process_creation`` events, as they happen.

:class:`ProcessExecCollector` is a streaming collector. It subscribes to the proc connector
(:mod:`agent.collectors.proc_connector`) and, for each exec, reads ``/proc`` at once
(:mod:`agent.collectors.process_info`) for the executable, command line, user, working
directory, container, socket-typed stdio and the parent and grandparent. A process that exits
before it can be read still produces an event (pid, and the parent known from its fork event),
counted in ``vedette_process_enrichment_failures_total``.

When the connector cannot be opened (no ``CAP_NET_ADMIN``, not in the initial network
namespace), the collector logs one warning, sets ``vedette_collector_degraded{collector=
"process"}`` to 1 and polls ``/proc`` instead (:mod:`agent.collectors.process_poll`), which
misses short-lived processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from agent.collectors.base import Publish
from agent.collectors.proc_connector import ProcConnector, ProcEvent
from agent.collectors.process_info import ProcInfo, ProcReader, process_fields
from agent.collectors.process_poll import ProcessPoller
from agent.errors import CollectorError
from agent.events import PROCESS_CREATION, Event
from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)
NAME = "process"
_CACHE = 8192


class EventSource(Protocol):
    lost: int

    def receive(self, timeout: float) -> list[ProcEvent]: ...

    def close(self) -> None: ...


class ProcessExecCollector:
    name = NAME

    def __init__(
        self,
        reader: ProcReader,
        metrics: AgentMetrics | None = None,
        *,
        connector: Callable[[], EventSource] = ProcConnector,
        poller: ProcessPoller | None = None,
        fallback: bool = True,
        poll_interval_seconds: float = 1.0,
        host_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._metrics = metrics
        self._connector = connector
        self._poller = poller or ProcessPoller(reader)
        self._fallback = fallback
        self._poll_interval = poll_interval_seconds
        self._host = host_name
        self._clock = clock
        self._parents: OrderedDict[int, int] = OrderedDict()  # pid -> ppid from fork events
        self._infos: OrderedDict[int, ProcInfo] = OrderedDict()  # live processes seen
        self.mode = "starting"

    def run(self, publish: Publish, stop: threading.Event) -> None:
        try:
            source = self._connector()
        except OSError as exc:
            if not self._fallback:
                raise CollectorError(f"proc connector unavailable: {exc.strerror or exc}") \
                    from None
            log.warning("proc connector unavailable (%s): polling /proc every %.1fs instead; "
                        "short-lived processes will be missed", exc.strerror or exc,
                        self._poll_interval)
            self._degraded(1)
            self._run_polling(publish, stop)
            return
        self._degraded(0)
        self.mode = "connector"
        lost = 0
        try:
            while not stop.is_set():
                batch = source.receive(0.5)
                if source.lost != lost:
                    if self._metrics is not None:
                        self._metrics.process_events_lost.inc(source.lost - lost)
                    lost = source.lost
                events = self.handle(batch)
                if events:
                    publish(events)
        finally:
            source.close()

    def handle(self, batch: list[ProcEvent]) -> list[Event]:
        """Turn connector events into process_creation events (public for tests)."""
        out: list[Event] = []
        for pe in batch:
            if pe.kind == "fork":
                if not pe.thread:
                    self._remember(self._parents, pe.pid, pe.parent_pid)
            elif pe.kind == "exec":
                out.append(self._exec_event(pe.pid))
            elif pe.kind == "exit":
                self._parents.pop(pe.pid, None)
                self._infos.pop(pe.pid, None)
        return out

    def _exec_event(self, pid: int) -> Event:
        now = self._clock()
        info = self._reader.read(pid)
        if info.ppid is None:
            info.ppid = self._parents.get(pid)
        if info.gone:
            if self._metrics is not None:
                self._metrics.process_enrichment_failures.inc()
        else:
            self._remember(self._infos, pid, info)
        return self._event(now, info, "connector")

    def _event(self, now: float, info: ProcInfo, source: str) -> Event:
        parent = self._lookup(info.ppid) if info.ppid else None
        grand = self._lookup(parent.ppid) if parent is not None and parent.ppid else None
        fields: dict[str, Any] = {
            "event.kind": "event", "event.category": "process", "event.type": "start",
            "event.action": "exec", "event.dataset": "linux.process",
            "vedette.process.source": source,
        }
        if self._host:
            fields["host.name"] = self._host
        fields.update(process_fields(self._reader, info, parent, grand))
        return Event(now, PROCESS_CREATION, fields)

    def _lookup(self, pid: int) -> ProcInfo | None:
        if pid <= 0:
            return None
        cached = self._infos.get(pid)
        if cached is not None:
            return cached
        info = self._reader.read(pid, full=False)
        if info.gone:
            return None
        self._remember(self._infos, pid, info)
        return info

    def _run_polling(self, publish: Publish, stop: threading.Event) -> None:
        self.mode = "polling"
        self._poller.poll()
        while not stop.wait(self._poll_interval):
            now = self._clock()
            events = [self._event(now, info, "poll") for info in self._poller.poll()]
            if events:
                publish(events)

    def _degraded(self, value: int) -> None:
        if self._metrics is not None:
            self._metrics.collector_degraded.labels(NAME).set(value)

    @staticmethod
    def _remember(cache: OrderedDict[int, Any], key: int, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > _CACHE:
            cache.popitem(last=False)
