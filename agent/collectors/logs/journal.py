"""Authentication messages from the systemd journal, through ``journalctl -o json --follow``.

The command line is fixed (no shell, nothing from configuration except the journalctl path):
``journalctl --output=json --follow --no-pager`` plus ``SYSLOG_FACILITY=4 SYSLOG_FACILITY=10``
(auth and authpriv, where sshd, sudo, su, login and shadow-utils log). The last entry's
``__CURSOR`` is kept in the state dir so a restart resumes after it (``--after-cursor``); on the
first start the journal is followed from its end (``--lines=0``). Entries are decoded by
:class:`~agent.collectors.parsers.decoders.JournalDecoder` into the same events as auth.log lines.
The cursor saved is the last one the pipeline acknowledged (every event read up to it
evaluated and its alerts durable; :func:`~agent.collectors.base.publish_acked`), not the
last one read. A cursor file that is damaged, or holds a cursor journalctl refuses (the journal
vacuumed, another machine id), is counted (``vedette_checkpoint_problems_total{reason=
"journal_cursor"}``) and replaced by ``@EPOCH`` — the refused cursor's entry time (its ``t=``),
or the file's mtime less :data:`SAVE_LAG` — and the journal is read again from there
(``--since``; duplicates, not a loss).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import select
import subprocess
import threading
import time
from pathlib import Path

from agent.collectors.base import Publish, publish_acked
from agent.collectors.logs.collector import LOGIN_ACTIONS
from agent.collectors.parsers.auth_context import AuthContext
from agent.collectors.parsers.decoders import JournalDecoder
from agent.durable import write_durably
from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)
_CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"\\]{1,512})"')
_SINCE = re.compile(r"@[0-9]{1,12}")
_REALTIME = re.compile(r"(?:^|;)t=([0-9a-f]{1,16})(?:;|$)")
SAVE_LAG = 300
"""Seconds between reading an entry and saving its cursor, at most (acknowledgement waits for
the checkpoint, which a large detection state writes only every ~30 s): a cursor known only by
its file's time resumes this much earlier."""
MAX_LINE = 1 << 20


def _nothing() -> None:
    return None


def journal_argv(journalctl: str, cursor: str | None, since: str | None = None) -> list[str]:
    argv = [journalctl, "--output=json", "--follow", "--no-pager"]
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    elif since:
        argv.append(f"--since={since}")
    else:
        argv.append("--lines=0")
    return [*argv, "SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"]


class JournalCollector:
    name = "journal"

    def __init__(self, journalctl: str, cursor_file: Path,
                 metrics: AgentMetrics | None = None,
                 context: AuthContext | None = None) -> None:
        self._journalctl = journalctl
        self._cursor_file = cursor_file
        self._metrics = metrics
        self._context = context
        problem = (lambda s, r: metrics.input_errors.labels(s, r).inc()) if metrics else None
        self._decoder = (JournalDecoder(on_problem=problem, context=context) if problem
                         else JournalDecoder(context=context))
        self._acked: str | None = None  # the newest acknowledged cursor, not yet saved
        self._ack_lock = threading.Lock()

    def _acknowledge(self, cursor: str) -> None:
        with self._ack_lock:
            self._acked = cursor

    def _save_acknowledged(self) -> None:
        """Write the newest acknowledged cursor; raises ``OSError`` (EIO, ENOSPC) with the
        cursor kept, so the pipeline counts the failure and tries again at the next tick."""
        with self._ack_lock:
            cursor = self._acked
        if cursor:
            write_durably(self._cursor_file, cursor)
            with self._ack_lock:
                if self._acked == cursor:
                    self._acked = None

    def _load_cursor(self) -> tuple[str | None, str | None]:
        """``(cursor, since)`` to resume from: the saved cursor, or — when the cursor file is
        damaged or holds a cursor journalctl refused — ``@EPOCH``, the time of the last
        acknowledged cursor (the file's mtime), so the journal is read again from there
        (duplicates, not a loss). ``(None, None)`` on a first start (no file)."""
        try:
            text = self._cursor_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as exc:
            return None, self._refuse(f"unreadable: {exc}")
        if _SINCE.fullmatch(text):
            return None, text
        if text and "\n" not in text and len(text) <= 512:
            return text, None
        return None, self._refuse("not a journal cursor")

    def _refuse(self, why: str, cursor: str | None = None) -> str | None:
        """Count and log an unusable cursor; replace it with the time of its entry (the
        cursor's ``t=`` field), or else the time it was saved less ``SAVE_LAG`` (entries
        read before the save but acknowledged later)."""
        since: str | None = None
        stamp = _REALTIME.search(cursor or "")
        if stamp is not None:
            since = f"@{max(0, int(stamp.group(1), 16) // 1_000_000 - 1)}"
        else:
            try:
                since = f"@{max(0, int(self._cursor_file.stat().st_mtime - SAVE_LAG))}"
            except OSError:
                pass
        log.error("%s: journal cursor refused (%s); reading the journal again from %s",
                  self._cursor_file, why, since or "its end (the cursor's time is unknown)")
        if self._metrics is not None:
            self._metrics.checkpoint_problems.labels(reason="journal_cursor").inc()
        if since is not None:
            self._save_cursor(since)  # a crash before the first acknowledgement keeps it
        else:
            self._cursor_file.unlink(missing_ok=True)
        return since

    def _save_cursor(self, cursor: str) -> None:
        try:
            write_durably(self._cursor_file, cursor)
        except OSError as exc:
            log.warning("cannot save journal cursor: %s", exc)

    def run(self, publish: Publish, stop: threading.Event) -> None:
        saved, since = self._load_cursor()
        argv = journal_argv(self._journalctl, saved, since)
        started = time.monotonic()
        # Own session: a Ctrl-C at the terminal stops the agent, which then ends journalctl
        # itself, instead of the signal killing journalctl first and looking like a failure.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        cursor: str | None = None
        read_any = False
        try:
            while not stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    if self._context is not None:
                        self._context.save()
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    status = proc.wait()
                    if (saved or since) and not read_any and time.monotonic() - started < 5:
                        # a cursor journalctl refuses (vacuumed, another machine id, damaged):
                        # the restart reads again from the time it was saved; a refused time
                        # is forgotten (the end) instead of failing the same way forever
                        if saved:
                            self._refuse("journalctl refused it", saved)
                        else:
                            self._cursor_file.unlink(missing_ok=True)
                    raise RuntimeError(f"journalctl exited with status {status}")
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE:
                    buffer = b""
                    if self._metrics is not None:
                        self._metrics.input_errors.labels("journal", "too_long").inc()
                events = []
                cursor = None
                for line in lines:
                    events.extend(self._decoder.feed(line))
                    m = _CURSOR.search(line)
                    if m:
                        cursor = m.group(1).decode("ascii", "replace")
                        read_any = True
                if self._metrics is not None and lines:
                    self._metrics.log_lines.labels("journal").inc(len(lines))
                    for event in events:
                        if event.get("event.action") in LOGIN_ACTIONS:
                            self._metrics.logins.labels(event.get("event.outcome")).inc()
                if (events or cursor) and not publish_acked(
                    publish, events,
                    functools.partial(self._acknowledge, cursor) if cursor else _nothing,
                    self._save_acknowledged, stop,
                ):
                    break  # stopping: not acknowledged, read again after the restart
        finally:
            try:
                self._save_acknowledged()
            except OSError as exc:  # read again after the restart: at least once
                log.warning("cannot save journal cursor: %s", exc)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
