"""State that turns single auth events into evidence: failures before a success, new sources.

:class:`AuthContext` watches the auth events a decoder produces, in order, and annotates them:

* every failed login (``ssh_login``/``login`` failure) from a source address is remembered
  for ``window_seconds``; a successful login from that address gets
  ``vedette.auth.failures_before`` = the failures from it in the window (a success after a
  burst of failures is the classic sign of a guessed password);
* successful logins teach the addresses each user logs in from; a success from an address not
  seen before for a user who *has* a history gets ``vedette.auth.new_source: true`` (the very
  first login of a user teaches without flagging);
* ``vedette.user.privileged: true`` is set on events of root and of members of the privileged
  groups (read once from ``/etc/group``).

Memory is bounded (least recently used sources and users are forgotten). The live collector
persists the login history in the state dir; replay starts empty.
"""

from __future__ import annotations

import json
import os
from array import array
from collections import OrderedDict
from pathlib import Path

from agent.events import Event

PRIVILEGED_GROUPS = frozenset({"root", "sudo", "wheel", "admin", "adm"})
_FAILURES = frozenset({"ssh_login", "login"})
MAX_FAILURES_PER_SOURCE = 1000


def privileged_users(group_file: Path = Path("/etc/group")) -> frozenset[str]:
    users = {"root"}
    try:
        text = group_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset(users)
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] in PRIVILEGED_GROUPS:
            users.update(u for u in parts[3].split(",") if u)
    return frozenset(users)


class AuthContext:
    def __init__(self, *, window_seconds: float = 600.0, privileged: frozenset[str] = frozenset(
            {"root"}), history_file: Path | None = None, max_sources: int = 50_000,
            max_users: int = 10_000, max_sources_per_user: int = 64) -> None:
        self._window = window_seconds
        self._privileged = privileged
        self._history_file = history_file
        self._max_sources = max_sources
        self._max_users = max_users
        self._per_user = max_sources_per_user
        # source -> failure times; array('d') is not tracked by the garbage collector, which
        # matters with tens of thousands of sources
        self._failures: OrderedDict[str, array[float]] = OrderedDict()
        self._history: OrderedDict[str, list[str]] = OrderedDict()
        self.dirty = False
        if history_file is not None:
            self._load(history_file)

    def annotate(self, event: Event) -> None:
        f = event.fields
        user = f.get("user.name")
        if user in self._privileged:
            f["vedette.user.privileged"] = True
        if f.get("event.action") not in _FAILURES:
            return
        outcome, source = f.get("event.outcome"), f.get("source.ip")
        if not isinstance(source, str):
            return
        if outcome == "failure":
            times = self._failures.get(source)
            if times is None:
                times = array("d")
                self._failures[source] = times
                if len(self._failures) > self._max_sources:
                    self._failures.popitem(last=False)
            else:
                self._failures.move_to_end(source)
            times.append(event.timestamp)
            if len(times) > MAX_FAILURES_PER_SOURCE:
                del times[: len(times) - MAX_FAILURES_PER_SOURCE]
        elif outcome == "success":
            times = self._failures.pop(source, None)
            if times is not None:
                since = event.timestamp - self._window
                f["vedette.auth.failures_before"] = sum(1 for t in times if t >= since)
            else:
                f["vedette.auth.failures_before"] = 0
            if isinstance(user, str):
                self._learn(f, user, source)

    def _learn(self, fields: dict[str, object], user: str, source: str) -> None:
        known = self._history.get(user)
        if known is None:
            self._history[user] = [source]
            if len(self._history) > self._max_users:
                self._history.popitem(last=False)
            self.dirty = True
            return
        self._history.move_to_end(user)
        if source in known:
            return
        fields["vedette.auth.new_source"] = True
        known.append(source)
        del known[: max(0, len(known) - self._per_user)]
        self.dirty = True

    def save(self) -> None:
        if self._history_file is None or not self.dirty:
            return
        try:
            self._history_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._history_file.with_name(self._history_file.name + ".tmp")
            tmp.write_text(json.dumps(dict(self._history)), encoding="utf-8")
            os.replace(tmp, self._history_file)
            self.dirty = False
        except OSError:
            pass

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return
        if isinstance(data, dict):
            for user, sources in list(data.items())[-self._max_users:]:
                if isinstance(user, str) and isinstance(sources, list):
                    self._history[user] = [s for s in sources if isinstance(s, str)][
                        -self._per_user:]
