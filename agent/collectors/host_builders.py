"""Builders of the host collectors (process, sockets, auth/web/audit logs, FIM, kernel modules).

Each takes the daemon's :class:`~agent.collectors.registry.CollectorContext` and returns the
collectors its config section asks for; :data:`HOST_BUILDERS` is merged into the registry's
``BUILDERS``. A builder raises :class:`~agent.errors.CollectorError` only when its collector
cannot work on this host at all (no ``/proc/net``, no ``/proc/modules``, journal forced on
without journalctl).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.collectors.audit_netlink import AuditSocket
from agent.collectors.auth_context import AuthContext, privileged_users
from agent.collectors.deleted_exe import DeletedExecutableCollector
from agent.collectors.fim import WatchList
from agent.collectors.fim_watch import FimCollector
from agent.collectors.journal import JournalCollector
from agent.collectors.kmod import KernelModuleCollector
from agent.collectors.log_decoders import AuditDecoder, AuthDecoder, LineDecoder, WebDecoder
from agent.collectors.log_tail import LogTailCollector
from agent.collectors.process_cpu import ProcessCpuCollector
from agent.collectors.process_exec import ProcessExecCollector
from agent.collectors.process_info import ProcReader
from agent.collectors.sockets import SocketsCollector
from agent.collectors.syslog_parse import SyslogClock
from agent.errors import CollectorError

if TYPE_CHECKING:
    from agent.collectors.registry import AnyCollector, Builder, CollectorContext

PROC = Path("/proc")
JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")


def _problem(ctx: CollectorContext) -> Callable[[str, str], None]:
    def count(source: str, reason: str) -> None:
        ctx.metrics.input_errors.labels(source, reason).inc()
    return count


def build_process(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.process
    if not section.enabled:
        return []
    out: list[AnyCollector] = [ProcessExecCollector(
        ProcReader(PROC), ctx.metrics, fallback=section.fallback_polling,
        poll_interval_seconds=section.poll_interval_seconds, host_name=ctx.identity.host_name,
        kernel_facts=AuditSocket if section.kernel_exec_facts else None)]
    out.append(DeletedExecutableCollector(10.0, PROC, host_name=ctx.identity.host_name))
    if section.cpu_sampling:
        out.append(ProcessCpuCollector(
            section.cpu_interval_seconds, threshold=section.cpu_threshold, proc_root=PROC,
            known_file=ctx.state_dir / "known-executables.json",
            host_name=ctx.identity.host_name))
    return out


def build_sockets(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.sockets
    if not section.enabled:
        return []
    if not (PROC / "net" / "tcp").exists():
        raise CollectorError("/proc/net/tcp is not readable")
    return [SocketsCollector(section.interval_seconds, outbound=section.outbound,
                             include_loopback=section.include_loopback,
                             max_events_per_run=section.max_events_per_run, proc_root=PROC,
                             metrics=ctx.metrics, host_name=ctx.identity.host_name)]


def build_auth_logs(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.auth_logs
    if not section.enabled:
        return []
    out: list[AnyCollector] = []
    problem = _problem(ctx)
    context = AuthContext(privileged=privileged_users(),
                          history_file=ctx.state_dir / "login-history.json")

    def decoder(path: Path) -> LineDecoder:
        return AuthDecoder(SyslogClock(), path=str(path), on_problem=problem, context=context)

    # auto: the journal when this host has one (its entries carry who really wrote them, see
    # journal_trust), the syslog files otherwise (docs/host.md "Trust boundaries")
    # (with auto and neither a journal nor any of the files, nothing is followed: degraded below)
    journal_present = any(os.path.isdir(d) for d in JOURNAL_DIRS)
    journal_auto = section.journal == "auto" and journal_present and os.access(
        section.journalctl, os.X_OK)
    any_file = any(p.exists() for p in section.paths)
    if section.paths and not journal_auto and (any_file or section.journal != "auto"):
        out.append(LogTailCollector(
            "auth_logs", list(section.paths), decoder,
            ctx.offsets("offsets-auth-logs.json"), ctx.metrics,
            poll_seconds=section.poll_interval_seconds, start_at_end=section.start_at_end,
            watch_integrity=section.watch_integrity, host_name=ctx.identity.host_name,
            on_idle=context.save))
    if section.sshd_paths:
        def bare(path: Path) -> LineDecoder:
            return AuthDecoder(SyslogClock(), path=str(path), on_problem=problem,
                               context=context, bare_program="sshd")

        out.append(LogTailCollector(
            "sshd_logs", list(section.sshd_paths), bare,
            ctx.offsets("offsets-sshd-logs.json"), ctx.metrics,
            poll_seconds=section.poll_interval_seconds, start_at_end=section.start_at_end,
            host_name=ctx.identity.host_name, on_idle=context.save))
    if section.journal == "on" or journal_auto:
        if not os.access(section.journalctl, os.X_OK):
            if section.journal == "on":
                raise CollectorError(f"{section.journalctl} is not executable")
        else:
            out.append(JournalCollector(str(section.journalctl),
                                        ctx.state_dir / "journal-auth.cursor", ctx.metrics,
                                        context))
    if section.journal == "on" and not journal_present:
        raise CollectorError(f"auth_logs.journal is on but this machine has no systemd journal "
                             f"({' or '.join(JOURNAL_DIRS)})")
    if not out:  # enabled, yet nothing to read: say so (degraded) instead of watching nothing
        paths = ", ".join(str(p) for p in section.paths) or "none configured"
        raise CollectorError(f"no authentication log to follow: no file among {paths}, "
                             "no sshd_paths, and no usable systemd journal")
    return out


def build_web_logs(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.web_logs
    if not section.enabled or not section.paths:
        return []
    problem = _problem(ctx)

    def decoder(path: Path) -> LineDecoder:
        return WebDecoder(path=str(path), on_problem=problem)

    return [LogTailCollector(
        "web_logs", list(section.paths), decoder,
        ctx.offsets("offsets-web-logs.json"), ctx.metrics,
        poll_seconds=section.poll_interval_seconds, start_at_end=section.start_at_end,
        host_name=ctx.identity.host_name)]


def build_auditd(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.auditd
    configured = "path" in section.model_fields_set
    if not section.enabled or not (section.path.exists() or configured):
        return []  # the default path without auditd installed: nothing to follow
    problem = _problem(ctx)

    def decoder(path: Path) -> LineDecoder:
        return AuditDecoder(on_problem=problem)

    return [LogTailCollector(
        "auditd", [section.path], decoder, ctx.offsets("offsets-auditd.json"),
        ctx.metrics, poll_seconds=section.poll_interval_seconds,
        start_at_end=section.start_at_end, host_name=ctx.identity.host_name)]


def build_fim(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.fim
    if not section.enabled:
        return []
    if section.default_watch_list:
        watch = WatchList.default(section.root, section.paths, section.exclude)
    else:
        files = [p for p in section.paths if not (section.root / p.lstrip("/")).is_dir()]
        dirs = [p for p in section.paths if p not in files]
        watch = WatchList(section.root, files, dirs, section.exclude, user_homes=False)
    return [FimCollector(watch, ctx.state_dir / "fim-baseline.json", ctx.metrics,
                         rescan_interval_seconds=section.rescan_interval_seconds,
                         max_hash_bytes=section.max_hash_bytes, use_inotify=section.inotify,
                         host_name=ctx.identity.host_name)]


def build_kernel_modules(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.kernel_modules
    if not section.enabled:
        return []
    if not (PROC / "modules").exists():
        raise CollectorError("/proc/modules does not exist (no module support or a sandbox)")
    return [KernelModuleCollector(section.interval_seconds, PROC, ctx.identity.host_name)]


HOST_BUILDERS: dict[str, Builder] = {
    "process": build_process,
    "sockets": build_sockets,
    "auth_logs": build_auth_logs,
    "web_logs": build_web_logs,
    "auditd": build_auditd,
    "fim": build_fim,
    "kernel_modules": build_kernel_modules,
}
