"""The ``auth_logs`` section: which authentication source to follow, and its shared state.

``journal: auto`` follows the systemd journal when this host has one (its entries carry who
really wrote them, see :mod:`agent.collectors.parsers.journal_trust`) and the syslog files
otherwise (docs/host.md "Trust boundaries"); ``on`` insists on the journal, ``off`` never uses
it. ``sshd_paths`` are files of bare sshd messages (no syslog header). One
:class:`~agent.collectors.parsers.auth_context.AuthContext` (failures before a success, new
sources, privileged users) is shared by every source, so evidence spans them.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.collectors.base import AnyCollector, CollectorContext
from agent.collectors.logs.collector import LogTailCollector, input_problem
from agent.collectors.logs.journal import JournalCollector
from agent.collectors.logs.tailer import OffsetStore
from agent.collectors.parsers.auth_context import AuthContext, privileged_users
from agent.collectors.parsers.decoders import AuthDecoder, LineDecoder
from agent.collectors.parsers.syslog import SyslogClock
from agent.errors import CollectorError

JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")


def build(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.auth_logs
    if not section.enabled:
        return []
    out: list[AnyCollector] = []
    problem = input_problem(ctx)
    context = AuthContext(privileged=privileged_users(),
                          history_file=ctx.state_dir / "login-history.json")

    def decoder(path: Path) -> LineDecoder:
        return AuthDecoder(SyslogClock(), path=str(path), on_problem=problem, context=context)

    # (with auto and neither a journal nor any of the files, nothing is followed: degraded below)
    journal_present = any(os.path.isdir(d) for d in JOURNAL_DIRS)
    journal_auto = section.journal == "auto" and journal_present and os.access(
        section.journalctl, os.X_OK)
    any_file = any(p.exists() for p in section.paths)
    if section.paths and not journal_auto and (any_file or section.journal != "auto"):
        out.append(LogTailCollector(
            "auth_logs", list(section.paths), decoder,
            OffsetStore(
                ctx.state_dir / "offsets-auth-logs.json",
                on_problem=ctx.state_problem), ctx.metrics,
            poll_seconds=section.poll_interval_seconds, start_at_end=section.start_at_end,
            watch_integrity=section.watch_integrity, host_name=ctx.identity.host_name,
            on_idle=context.save))
    if section.sshd_paths:
        def bare(path: Path) -> LineDecoder:
            return AuthDecoder(SyslogClock(), path=str(path), on_problem=problem,
                               context=context, bare_program="sshd")

        out.append(LogTailCollector(
            "sshd_logs", list(section.sshd_paths), bare,
            OffsetStore(
                ctx.state_dir / "offsets-sshd-logs.json",
                on_problem=ctx.state_problem), ctx.metrics,
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
