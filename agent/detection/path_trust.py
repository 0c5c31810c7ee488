"""Rule paths other users can write to are refused, the way sshd's ``StrictModes`` refuses them.

Whoever can write a rule file decides what the agent reports: an unprivileged user who can
edit ``ssh_bruteforce.yml`` raises its threshold to 100,000 and the next brute force goes
unreported; one who can create files in a rule folder adds a rule that hides his own tools.
So before rules are (re)loaded, every configured rule path is checked — the path itself,
everything below it, and every directory above it up to ``/`` — and a configured path is
refused *as a whole* when any of them is:

* writable by everyone (``o+w``) — except a parent directory with the sticky bit (``/tmp``):
  others cannot rename or replace what is inside it;
* writable by a group other than root's and the agent's own (``g+w``);
* owned by someone other than root and the agent's own user.

A symlink is judged by its target *and* every folder above the target (whoever can write the
target's folder can put another file in its place).

A refused path loads nothing; its reason is a rule error (``file: reason``), so a hot reload
that meets one keeps the previous rules, and :func:`integrity_alert` turns the refusal into an
alert of its own (the rules meant to catch the tampering may be the refused ones). The
``detection.allow_unsafe_rule_paths`` option turns the check off (for a shared lab machine, not
for production).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.alerts import Alert, RuleRef, alert_id
from agent.detection.loader import LoadReport, load_rules
from agent.errors import RuleError

UNSAFE_PATH_RULE = RuleRef(
    id="4c2f6a1e-0b8d-4f5e-9a7c-3d1e2b6f8a90",
    title="Rule path writable by other users refused",
    level="high",
    description="A configured rule path, a file or folder below it or a folder above it can be "
                "written by users other than root and the agent; its rules were not loaded "
                "(detection.allow_unsafe_rule_paths). Someone who can write rules decides "
                "what is reported.",
    author="Vedette",
    tags=("attack.defense-evasion", "attack.t1562.001"),
)
MAX_ENTRIES = 100_000  # a rule tree larger than this is refused rather than walked forever


@dataclass(frozen=True, slots=True)
class UnsafePath:
    configured: Path
    """The configured rule path that is refused."""
    culprit: Path
    """The file or folder that others can write (the configured path, below or above it)."""
    reason: str

    def error(self) -> RuleError:
        return RuleError(f"rule path refused: {self.culprit} {self.reason}, so other users "
                         "could change the rules (fix the permissions, or set "
                         "detection.allow_unsafe_rule_paths)", str(self.configured))


def _problem(st: os.stat_result, *, parent: bool) -> str | None:
    uid, gid = os.geteuid(), os.getegid()
    mode = st.st_mode
    if st.st_uid not in (0, uid):
        return f"is owned by uid {st.st_uid}"
    if mode & stat.S_IWOTH and not (parent and stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
        return "is writable by everyone"
    if mode & stat.S_IWGRP and st.st_gid not in (0, gid):
        return f"is writable by group {st.st_gid}"
    return None


def check_path(configured: Path) -> UnsafePath | None:
    """The first reason to refuse ``configured`` (module docstring), or ``None``."""
    try:
        absolute = configured.absolute()
        for parent in reversed(absolute.parents):
            reason = _problem(parent.stat(), parent=True)
            if reason is not None:
                return UnsafePath(configured, parent, reason)
        seen = 0
        stack = [absolute]
        while stack:
            path = stack.pop()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                st = path.stat()  # the loader follows links: check what they point to,
                for parent in reversed(path.resolve().parents):  # and the folders above it
                    reason = _problem(parent.stat(), parent=True)
                    if reason is not None:
                        return UnsafePath(configured, parent, reason)
            reason = _problem(st, parent=False)
            if reason is not None:
                return UnsafePath(configured, path, reason)
            if stat.S_ISDIR(st.st_mode) and not path.is_symlink():
                for child in path.iterdir():
                    seen += 1
                    if seen > MAX_ENTRIES:
                        return UnsafePath(configured, path, f"has more than {MAX_ENTRIES} "
                                          "entries")
                    stack.append(child)
    except FileNotFoundError:
        return None  # a missing path is the loader's error to report
    except OSError as exc:
        return UnsafePath(configured, configured, f"cannot be checked: {exc.strerror or exc}")
    return None


def unsafe_paths(paths: Iterable[Path]) -> list[UnsafePath]:
    return [u for u in map(check_path, paths) if u is not None]


def integrity_alert(unsafe: UnsafePath, now: float) -> Alert:
    """The alert that says a rule path was refused (one per configured path and load)."""
    group = {"file.path": str(unsafe.configured)}
    matched = {"file.path": str(unsafe.culprit), "event.reason": unsafe.reason}
    return Alert(
        id=alert_id(UNSAFE_PATH_RULE.id, group, now), rule=UNSAFE_PATH_RULE, group=group,
        first_seen=now, last_seen=now, matched=matched,
        message=f"rule path {unsafe.configured} refused: {unsafe.culprit} {unsafe.reason}",
        categories=("configuration",),
    )


def load_trusted_rules(paths: list[Path], extra_paths: list[Path], *, allow_unsafe: bool,
                       local_paths: list[Path] | None = None, metrics: Any = None,
                       now: float | None = None) -> tuple[LoadReport, list[Alert]]:
    """:func:`load_rules` on the paths that pass the check; the refusals as errors + alerts.

    The alerts are also ``report.internal_alerts``, for callers that only keep the report.
    """
    local = list(local_paths or [])
    refused = [] if allow_unsafe else unsafe_paths([*paths, *extra_paths, *local])
    bad = {u.configured for u in refused}
    report = load_rules([p for p in paths if p not in bad],
                        [p for p in extra_paths if p not in bad], metrics=metrics,
                        local_paths=[p for p in local if p not in bad])
    for unsafe in refused:
        report.errors.append(unsafe.error())
        report.failed += 1
    if metrics is not None:
        metrics.rule_load_errors.inc(len(refused))
        metrics.rule_paths_refused.set(len(refused))
    stamp = time.time() if now is None else now
    alerts = [integrity_alert(u, stamp) for u in refused]
    report.internal_alerts.extend(alerts)
    return report, alerts
