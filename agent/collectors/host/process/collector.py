"""Process executions as ``linux``/``process_creation`` events, as they happen.

(About 400 lines: the three exec sources — audit records, the proc connector, /proc polling —
share the per-pid state kept here; what each reads lives in its own module beside this one.)

:class:`ProcessExecCollector` is a streaming collector. It subscribes to the proc connector
(:mod:`agent.collectors.host.process.connector`) and, for each exec, reads ``/proc`` at once
(:mod:`agent.collectors.host.process.procfs`) for the executable, command line, user, working
directory, container, socket-typed stdio and the parent and grandparent. A process that exits
before it can be read still produces an event (pid, and the parent known from its fork event),
counted in ``vedette_process_enrichment_failures_total``.

When the connector cannot be opened (no ``CAP_NET_ADMIN``, not in the initial network
namespace), the collector logs one warning, sets ``vedette_collector_degraded{collector=
"process"}`` to 1 and polls ``/proc`` instead (:mod:`agent.collectors.host.process.poll`), which
misses short-lived processes.

When the kernel's audit subsystem can be used (``CAP_AUDIT_CONTROL``; :mod:`.audit_netlink`),
the exec facts — pid, ppid, uid/euid/gid, executable, full argv, cwd — come from
the audit records of the ``execve`` itself (:mod:`~agent.collectors.host.process.audit_exec`), not
from a later ``/proc`` read that a millisecond-long process wins; ``/proc`` then only adds what
audit does not say (socket-typed stdio, container, start time), best effort. The proc connector
stays open for forks, exits and uid changes. ``vedette_process_exec_source{source}`` is 1 for the
source in use: ``audit``, ``connector`` (proc connector + ``/proc``) or ``poll``.

uid changes (the kernel's ``PROC_EVENT_UID``: real or effective uid changed, or a setuid program
was executed) become ``vedette``/``process_uid_change`` events. The ids each process had before
are tracked per pid from the connector stream alone — read once from ``/proc`` at start,
inherited at fork, updated by each uid event, forgotten at exit — never from ``/proc`` reads at
exec, which may already show a later change whose event is still queued. A uid event that
leaves both real and effective uid as they were (saved or filesystem uid only; the same change
reported by each thread) is not reported. Polling mode sees no uid changes.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.collectors.base import AnyCollector, CollectorContext, Publish
from agent.collectors.host.process.audit_exec import ExecAssembler, ExecFacts
from agent.collectors.host.process.audit_netlink import AuditRecord, AuditSocket
from agent.collectors.host.process.connector import ProcConnector, ProcEvent
from agent.collectors.host.process.cpu import ProcessCpuCollector
from agent.collectors.host.process.deleted_exe import DeletedExecutableCollector
from agent.collectors.host.process.download_args import build_output, download_path
from agent.collectors.host.process.poll import ProcessPoller
from agent.collectors.host.process.procfs import (
    ProcInfo,
    ProcReader,
    interactive_shell,
    is_shell,
    process_fields,
    script_path,
    stdin_program,
    uid_change_fields,
)
from agent.collectors.host.process.shell_copies import ShellCopies
from agent.errors import CollectorError
from agent.events import PROCESS_CREATION, Event, LogSource
from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)
NAME = "process"
_CACHE = 8192
BUILT_SECONDS = 3600.0  # a program a compiler/linker wrote within the hour is "built locally"
PROCESS_UID_CHANGE = LogSource("vedette", "process_uid_change")


class EventSource(Protocol):
    lost: int

    def receive(self, timeout: float) -> list[ProcEvent]: ...

    def close(self) -> None: ...


class KernelExecSource(Protocol):
    """Audit records of execs (:class:`.audit_netlink.AuditSocket`)."""

    lost: int
    mode: str

    def fileno(self) -> int: ...

    def drain(self) -> list[AuditRecord]: ...

    def kernel_lost(self) -> int: ...

    def delivering(self) -> bool: ...

    def close(self) -> None: ...


SOURCES = ("audit", "connector", "poll")


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
        kernel_facts: Callable[[], KernelExecSource] | None = None,
        shell_copies: ShellCopies | None = None,
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
        self._ids: OrderedDict[int, tuple[int, int]] = OrderedDict()  # pid -> (uid, euid)
        self._built: OrderedDict[str, float] = OrderedDict()  # compiler output -> when
        self._kernel_facts = kernel_facts
        self._shell_copies = shell_copies
        self._assembler = ExecAssembler()
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
            self._source("poll")
            self._run_polling(publish, stop)
            return
        self._degraded(0)
        self.seed_uids()
        kernel = self._open_kernel_facts()
        if kernel is not None:
            try:
                self._run_audit(source, kernel, publish, stop)
            finally:
                kernel.close()
                source.close()
            return
        self._source("connector")
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

    def _open_kernel_facts(self) -> KernelExecSource | None:
        if self._kernel_facts is None:
            return None
        try:
            kernel = self._kernel_facts()
        except OSError as exc:
            log.warning("audit exec facts unavailable (%s): exec details come from /proc, "
                        "which a process that exits at once can escape",
                        exc.strerror or exc)
            return None
        log.info("exec facts from the kernel audit subsystem (%s mode)", kernel.mode)
        return kernel

    def _run_audit(self, source: EventSource, kernel: KernelExecSource, publish: Publish,
                   stop: threading.Event) -> None:
        self.mode = "audit"
        self._source("audit")
        fds: list[Any] = [kernel]
        if hasattr(source, "fileno"):
            fds.append(source)
        lost = connector_lost = kernel_lost = 0
        next_check = self._clock() + 5.0
        while not stop.is_set():
            ready, _, _ = select.select(fds, [], [], 0.5)
            events = self.handle(source.receive(0.0) if source in ready or len(fds) == 1
                                 else [])
            records = kernel.drain() if kernel in ready else []
            events.extend(self.handle_records(records) if self.mode == "audit" else [])
            now = self._clock()
            if now >= next_check:  # records the kernel dropped, an EOE that never came
                next_check = now + 5.0
                self._check_delivery(kernel)
                events.extend(self._from_facts(f) for f in self._assembler.expire(now))
                dropped = kernel.kernel_lost()
                if dropped > kernel_lost:
                    self._lost(dropped - kernel_lost)
                    kernel_lost = dropped
            if kernel.lost != lost or source.lost != connector_lost:
                self._lost(kernel.lost - lost + source.lost - connector_lost)
                lost, connector_lost = kernel.lost, source.lost
            if events:
                publish(events)

    def _check_delivery(self, kernel: KernelExecSource) -> None:
        """Audit silenced by someone else (``auditctl -e 0``/``-D``, another audit daemon):
        exec events from the connector + ``/proc`` until the records come back."""
        delivering = kernel.delivering()
        if self.mode == "audit" and not delivering:
            log.warning("audit exec records stopped (auditing disabled, Vedette's rule removed "
                        "or another audit daemon registered): exec events from the proc "
                        "connector and /proc until they come back")
            self.mode = "connector"
            self._source("connector")
        elif self.mode == "connector" and delivering:
            log.info("audit exec records delivered again: exec facts from the kernel")
            self.mode = "audit"
            self._source("audit")

    def _lost(self, count: int) -> None:
        if self._metrics is not None and count > 0:
            self._metrics.process_events_lost.inc(count)

    def handle_records(self, records: list[AuditRecord]) -> list[Event]:
        """Turn audit records into process_creation events (public for tests)."""
        out: list[Event] = []
        for record in records:
            for facts in self._assembler.add(record):
                out.append(self._from_facts(facts))
        return out

    def _from_facts(self, facts: ExecFacts) -> Event:
        info = self._reader.read(facts.pid, extras_only=True)  # may be gone or exec'd again
        same = not info.gone and info.executable == facts.executable
        info.ppid = facts.ppid or info.ppid
        info.executable = facts.executable or (info.executable if same else None)
        info.deleted = info.deleted and same
        if not same:  # /proc shows the next program (exec'd again): its stdio is not ours
            info.socket_fds, info.socket_inode, info.unix_socket_fds = (), None, ()
            info.stdin_pipe = info.stdout_pipe = info.stdout_file = None
        info.args = facts.args if facts.args is not None else (info.args if same else None)
        info.cwd = facts.cwd or info.cwd
        info.comm = facts.comm or info.comm
        info.uid, info.euid = facts.uid, facts.euid
        info.gid = facts.gid if facts.gid is not None else info.gid
        alive, info.gone = not info.gone, False
        if not facts.complete and self._metrics is not None:
            self._metrics.process_enrichment_failures.inc()
        if alive:  # a process already gone may have had its exit handled: do not cache it
            self._remember(self._infos, facts.pid, info)
        event = self._event(facts.timestamp, info, "audit")
        if facts.auid is not None:
            event.fields["user.audit.id"] = str(facts.auid)
        if facts.session is not None:
            event.fields["vedette.process.audit_session"] = str(facts.session)
        if facts.tty:
            event.fields["process.tty.name"] = facts.tty
        return event

    def handle(self, batch: list[ProcEvent]) -> list[Event]:
        """Turn connector events into process_creation and process_uid_change events (public
        for tests)."""
        out: list[Event] = []
        for pe in batch:
            if pe.kind == "fork":
                if not pe.thread:
                    self._remember(self._parents, pe.pid, pe.parent_pid)
                    ids = self._ids.get(pe.parent_pid)
                    if ids is not None:
                        self._remember(self._ids, pe.pid, ids)
            elif pe.kind == "exec":
                if self.mode != "audit":  # audit mode: the exec's own records describe it
                    out.append(self._exec_event(pe.pid))
            elif pe.kind == "uid":
                event = self._uid_event(pe)
                if event is not None:
                    out.append(event)
            elif pe.kind == "exit":
                self._parents.pop(pe.pid, None)
                self._infos.pop(pe.pid, None)
                self._ids.pop(pe.pid, None)
        return out

    def seed_uids(self) -> None:
        """Record the uids of the processes already running (before their next change)."""
        for pid in self._reader.pids()[-_CACHE:]:
            if pid not in self._ids and (ids := self._reader.uids(pid)) is not None:
                self._remember(self._ids, pid, ids)

    def _uid_event(self, pe: ProcEvent) -> Event | None:
        ids = (pe.uid, pe.euid)
        previous = self._ids.get(pe.pid)
        self._remember(self._ids, pe.pid, ids)
        if previous == ids:
            return None
        now = self._clock()
        cached = self._infos.get(pe.pid)
        if cached is not None:  # it may be someone's parent: keep its user right
            cached.uid, cached.euid = ids
        info = self._reader.read(pe.pid, full=False)
        if info.ppid is None:
            info.ppid = self._parents.get(pe.pid)
        if info.gone and self._metrics is not None:
            self._metrics.process_enrichment_failures.inc()
        fields: dict[str, Any] = {
            "event.kind": "event", "event.category": "process", "event.type": "change",
            "event.action": "uid_change", "event.dataset": "linux.process",
        }
        if self._host:
            fields["host.name"] = self._host
        parent = self._lookup(info.ppid) if info.ppid else None
        fields.update(uid_change_fields(self._reader, info, parent, ids, previous))
        return Event(now, PROCESS_UID_CHANGE, fields)

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
        if info.args:
            built = build_output(info.args, info.cwd)
            if built:
                self._remember(self._built, built, now)
        if info.executable and (when := self._built.get(info.executable)) is not None \
                and now - when < BUILT_SECONDS:
            fields["vedette.process.built_locally"] = True
        ran = script_path(info)
        fields["vedette.process.file"] = ran or info.executable
        if ran:
            fields["vedette.process.script"] = ran
        if info.args and info.executable and info.executable.endswith(("/curl", "/wget")):
            target = download_path(info.args, info.cwd) or info.stdout_file
            if target:
                fields["vedette.download.path"] = target
        from_stdin = stdin_program(info)
        if from_stdin is not None:
            fields["vedette.process.stdin_program"] = from_stdin
        shell = is_shell(info)
        if not shell and self._shell_copies is not None and info.executable \
                and self._shell_copies.is_copy(info.pid, info.executable):
            shell = True  # cp /bin/dash …/kthreadd: a shell under another name
            fields["vedette.process.shell_copy"] = True
            fields["vedette.process.stdin_program"] = interactive_shell(info.args)
        if shell:  # the socket→shell relation through a pty or socketpair relay
            fields["vedette.process.interactive_shell"] = interactive_shell(info.args)
            if parent is not None and fields["vedette.process.interactive_shell"]:
                fields["vedette.process.parent.network_socket"] = \
                    self._reader.holds_network_socket(parent.pid)
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

    def _source(self, active: str) -> None:
        if self._metrics is not None:
            for name in SOURCES:
                self._metrics.process_exec_source.labels(name).set(int(name == active))

    def _degraded(self, value: int) -> None:
        if self._metrics is not None:
            self._metrics.collector_degraded.labels(NAME).set(value)

    @staticmethod
    def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > _CACHE:
            cache.popitem(last=False)


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``process`` section: execs, programs running deleted, and (optionally) CPU use."""
    section = ctx.config.process
    if not section.enabled:
        return []
    proc = Path("/proc")
    out: list[AnyCollector] = [ProcessExecCollector(
        ProcReader(proc), ctx.metrics, fallback=section.fallback_polling,
        poll_interval_seconds=section.poll_interval_seconds, host_name=ctx.identity.host_name,
        kernel_facts=AuditSocket if section.kernel_exec_facts else None,
        shell_copies=ShellCopies())]
    out.append(DeletedExecutableCollector(10.0, proc, host_name=ctx.identity.host_name))
    if section.cpu_sampling:
        out.append(ProcessCpuCollector(
            section.cpu_interval_seconds, threshold=section.cpu_threshold, proc_root=proc,
            known_file=ctx.state_dir / "known-executables.json",
            host_name=ctx.identity.host_name,
            young_interval_seconds=section.cpu_young_interval_seconds))
    return out
