"""File integrity monitoring as a streaming collector: inotify for immediacy, rescans for the rest.

On start the baseline is loaded from the state dir (``fim-baseline.json``) and compared with a
fresh scan, so changes made while the agent was down are reported; without a baseline one is
built silently. inotify watches every directory that holds a watched path (and, for a file
that does not exist yet, its nearest existing ancestor, so creating ``~/.ssh/authorized_keys``
is seen). Each batch of inotify events is settled for ``settle_seconds`` (editors write a temp
file and rename it), then the affected paths are re-read and compared with the baseline. The
scheduled rescan (``rescan_interval_seconds``) catches what inotify cannot see (queue overflow,
watch limits, changes on other mounts). Events are ``linux``/``file_event`` with old and new
hash, mode and owner (see docs/events.md).
"""

from __future__ import annotations

import logging
import os
import pwd
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.collectors.base import AnyCollector, CollectorContext, Publish
from agent.collectors.host.fim.baseline import (
    Change,
    FileState,
    WatchList,
    compare,
    diff,
    file_state,
    load_baseline,
    save_baseline,
    scan,
)
from agent.collectors.host.fim.inotify import (
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_Q_OVERFLOW,
    Inotify,
)
from agent.collectors.host.fim.package_activity import PackageManager, package_activity
from agent.events import FILE_EVENT, Event, format_timestamp
from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)
NAME = "fim"
PASSWD = "/etc/passwd"  # noqa: S105 - a path, not a secret
_EVENT_TYPE = {"created": "creation", "modified": "change", "deleted": "deletion",
               "attributes_changed": "change"}


class FimCollector:
    name = NAME

    def __init__(
        self,
        watch: WatchList,
        baseline_path: Path,
        metrics: AgentMetrics | None = None,
        *,
        rescan_interval_seconds: float = 3600.0,
        max_hash_bytes: int = 1 << 30,
        use_inotify: bool = True,
        settle_seconds: float = 0.1,
        host_name: str = "",
        clock: Callable[[], float] = time.time,
        package_manager: Callable[[], PackageManager | None] = package_activity,
    ) -> None:
        self._package_manager = package_manager
        self._watch = watch
        self._baseline_path = baseline_path
        self._metrics = metrics
        self._rescan_every = rescan_interval_seconds
        self._max_hash = max_hash_bytes
        self._use_inotify = use_inotify
        self._settle = settle_seconds
        self._host = host_name
        self._clock = clock
        self._states: dict[str, FileState] = {}
        self._wds: dict[int, str] = {}  # watch descriptor -> real directory
        self._dirty_baseline = False
        # every directory above a watched path: an event there may create the path
        self._ancestors: set[str] = set()
        for target in (*watch.files, *watch.dirs):
            self._ancestors.update(_parents(os.path.dirname(target.rstrip("/"))))
        self.ready = threading.Event()  # set once the baseline is in place (tests)
        self._unreadable = 0  # watched paths the last scan could not read (permission)
        self._rearm = False  # new watch targets (a new user's home) need inotify watches

    # ------------------------------------------------------------------ running

    def run(self, publish: Publish, stop: threading.Event) -> None:
        first = self.start()
        if first:
            publish(first)
        inotify: Inotify | None = None
        if self._use_inotify:
            try:
                inotify = Inotify()
            except OSError as exc:
                log.warning("inotify unavailable (%s): file changes are seen at the next "
                            "rescan only", exc.strerror or exc)
        if self._unreadable:  # said once: the agent cannot see these files change
            log.warning("FIM: %d watched path(s) cannot be read (the agent lacks "
                        "CAP_DAC_READ_SEARCH?): their changes go unseen", self._unreadable)
        self._set_degraded((inotify is None and self._use_inotify) or self._unreadable > 0)
        next_rescan = time.monotonic() + self._rescan_every
        try:
            if inotify is not None:
                self._arm(inotify)
            self.ready.set()
            while not stop.is_set():
                if time.monotonic() >= next_rescan:
                    events = self.rescan()
                    next_rescan = time.monotonic() + self._rescan_every
                    if inotify is not None:
                        self._arm(inotify)
                elif inotify is not None:
                    events = self._inotify_batch(inotify)
                else:
                    stop.wait(min(1.0, max(0.0, next_rescan - time.monotonic())))
                    events = []
                if events:
                    publish(events)
                elif self._dirty_baseline:
                    self._save()
        finally:
            if inotify is not None:
                inotify.close()
            self._save()

    def start(self) -> list[Event]:
        """Load the baseline and report what changed since it was saved."""
        saved = load_baseline(self._baseline_path)
        if saved is None and self._baseline_path.exists():
            log.warning("FIM baseline %s is unreadable: building a new one (changes since the "
                        "last good baseline are not reported)", self._baseline_path)
            self._problem(NAME, "bad_baseline")
        self._states = self._scan(saved or {})
        changes = diff(saved, self._states) if saved is not None else []
        self._dirty_baseline = True
        self._save()
        return self._events(changes, "startup")

    def rescan(self) -> list[Event]:
        fresh = self._scan(self._states)
        changes = diff(self._states, fresh)
        self._states = fresh
        self._dirty_baseline = True
        return self._events(changes, "rescan")

    def check(self, logical_paths: set[str]) -> list[Event]:
        """Re-read some paths now and report their changes (used for inotify events)."""
        changes: list[Change] = []
        for logical in sorted(logical_paths):
            old = self._states.get(logical)
            new = file_state(self._watch.real(self._watch.root, logical), old,
                             max_hash_bytes=self._max_hash, on_problem=self._problem)
            change = compare(logical, old, new)
            if new is None:
                self._states.pop(logical, None)
            else:
                self._states[logical] = new
            if change is not None:
                changes.append(change)
        if changes:
            self._dirty_baseline = True
        if PASSWD in logical_paths and self._watch.user_homes:
            self._add_homes()
        return self._events(changes, "inotify")

    def _add_homes(self) -> None:
        """A user was added: watch their home's files from now on. What ``useradd -m`` put
        there (the skeleton's ``.bashrc``) becomes the baseline silently; what changes later
        (an appended ``.bashrc``, a new ``authorized_keys``) is reported."""
        for logical in self._watch.refresh_homes():
            self._ancestors.update(_parents(os.path.dirname(logical)))
            state = file_state(self._watch.real(self._watch.root, logical), None,
                               max_hash_bytes=self._max_hash, on_problem=self._problem)
            if state is not None:
                self._states[logical] = state
                self._dirty_baseline = True
            self._rearm = True

    # ------------------------------------------------------------------ inotify

    def _inotify_batch(self, inotify: Inotify) -> list[Event]:
        raw = inotify.read(0.25)
        if not raw:
            return []
        time.sleep(self._settle)
        raw += inotify.read(0)
        dirty: set[str] = set()
        rearm = False
        for ev in raw:
            if ev.mask & IN_Q_OVERFLOW:
                log.warning("inotify queue overflow: rescanning")
                events = self.rescan()
                self._arm(inotify)
                return events
            base = self._wds.get(ev.wd)
            if base is None:
                continue
            if ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                rearm = True
                dirty.update(self._under(self._watch.logical(base)))
                continue
            logical = self._watch.logical(os.path.join(base, ev.name) if ev.name else base)
            if ev.mask & IN_ISDIR:
                rearm = True
                dirty.update(self._under(logical))
                dirty.update(self._walk_new(logical))
            if self._watch.covers(logical):
                dirty.add(logical)
            elif self._is_ancestor_of_target(logical):
                rearm = True
                dirty.update(t for t in self._watch.files if t.startswith(logical + "/"))
        events = self.check(dirty)
        if rearm or self._rearm:
            self._rearm = False
            self._arm(inotify)
        return events

    def _under(self, logical: str) -> set[str]:
        prefix = logical.rstrip("/") + "/"
        return {p for p in self._states if p == logical or p.startswith(prefix)}

    def _walk_new(self, logical: str) -> set[str]:
        real = self._watch.real(self._watch.root, logical)
        found = {logical}
        for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
            for name in dirnames + filenames:
                found.add(self._watch.logical(os.path.join(dirpath, name)))
            if len(found) > 10_000:
                break
        return {p for p in found if self._watch.covers(p)}

    def _is_ancestor_of_target(self, logical: str) -> bool:
        return logical.rstrip("/") in self._ancestors

    def _wanted_dirs(self) -> set[str]:
        root = self._watch.root
        wanted: set[str] = set()
        for logical, state in self._states.items():
            if state.type == "dir":
                wanted.add(self._watch.real(root, logical))
        for target in (*self._watch.files, *self._watch.dirs):
            real = self._watch.real(root, target)
            probe = real if target in self._watch.dirs else os.path.dirname(real)
            while not os.path.isdir(probe) and len(probe) > len(str(root)):
                probe = os.path.dirname(probe)
            if os.path.isdir(probe):
                wanted.add(probe)
        return wanted

    def _arm(self, inotify: Inotify) -> None:
        wanted = self._wanted_dirs()
        have = {d: wd for wd, d in self._wds.items()}
        for directory, wd in have.items():
            if directory not in wanted:
                inotify.rm_watch(wd)
                del self._wds[wd]
        for directory in sorted(wanted - have.keys()):
            try:
                self._wds[inotify.add_watch(directory)] = directory
            except OSError as exc:
                self._problem(NAME, "watch_limit" if exc.errno == 28 else "permission")

    # ------------------------------------------------------------------ helpers

    def _scan(self, previous: dict[str, FileState]) -> dict[str, FileState]:
        started = time.monotonic()
        states = scan(self._watch, previous, max_hash_bytes=self._max_hash,
                      on_problem=self._problem)
        if self._metrics is not None:
            self._metrics.fim_rescan_duration.set(time.monotonic() - started)
            self._metrics.fim_files.set(len(states))
        return states

    def _save(self) -> None:
        if not self._dirty_baseline:
            return
        try:
            save_baseline(self._baseline_path, self._states)
            self._dirty_baseline = False
        except OSError as exc:
            log.warning("cannot save the FIM baseline: %s", exc)

    def _problem(self, source: str, reason: str) -> None:
        if reason == "permission":
            self._unreadable += 1
        if self._metrics is not None:
            self._metrics.input_errors.labels(source, reason).inc()

    def _set_degraded(self, degraded: bool) -> None:
        if self._metrics is not None:
            self._metrics.collector_degraded.labels(NAME).set(1 if degraded else 0)

    def _events(self, changes: list[Change], source: str) -> list[Event]:
        now = self._clock()
        out = []
        manager = self._package_manager() if changes and source == "inotify" else None
        for change in changes:
            if self._metrics is not None:
                self._metrics.fim_changes.labels(change.action).inc()
            fields = self._fields(change, source)
            if manager is not None:  # changed while a package transaction runs
                fields["vedette.fim.package_manager"] = manager.executable
                fields["vedette.fim.package_transaction"] = manager.transaction
            out.append(Event(now, FILE_EVENT, fields))
        return out

    def _fields(self, change: Change, source: str) -> dict[str, Any]:
        f: dict[str, Any] = {
            "event.kind": "event", "event.category": "file", "event.action": change.action,
            "event.type": _EVENT_TYPE[change.action], "event.dataset": "vedette.fim",
            "file.path": change.path, "file.name": os.path.basename(change.path),
            "file.directory": os.path.dirname(change.path),
            "vedette.fim.source": source, "vedette.fim.changes": list(change.changes),
        }
        if self._host:
            f["host.name"] = self._host
        current = change.new or change.old
        assert current is not None
        f["file.type"] = current.type
        if change.new is not None:
            _state_fields(f, "file.", change.new)
        if change.old is not None:
            _state_fields(f, "vedette.fim.previous.", change.old)
        return f


def _parents(path: str) -> list[str]:
    out = []
    while path and path != "/":
        out.append(path)
        path = os.path.dirname(path)
    return out


def _state_fields(f: dict[str, Any], prefix: str, s: FileState) -> None:
    f[prefix + "mode"] = f"{s.mode:04o}"
    f[prefix + "uid"] = str(s.uid)
    f[prefix + "gid"] = str(s.gid)
    f[prefix + "size"] = s.size
    f[prefix + "inode"] = str(s.inode)
    f[prefix + "mtime"] = format_timestamp(s.mtime_ns / 1e9)
    if s.sha256:
        f[prefix + ("hash.sha256" if prefix == "file." else "sha256")] = s.sha256
    if s.link_target is not None:
        f[prefix + "target_path"] = s.link_target
    if prefix == "file.":
        try:
            f["file.owner"] = pwd.getpwuid(s.uid).pw_name
        except (KeyError, OverflowError):
            pass


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``fim`` section's collector (the default watch list, or exactly the paths given)."""
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
