"""File integrity: the watch list, file state (hash, mode, owner, inode, mtime), baseline, diff.

Paths are *logical* absolute paths (``/etc/passwd``) resolved under a root directory (``/`` in
production, a temporary directory in tests), and events report the logical path.

A watch target is a file or a directory; directories are scanned recursively without following
symbolic links (a symlink is recorded with its target and never hashed, so link loops cannot
trap the scanner). Regular files are hashed with SHA-256 in 1 MiB chunks; a file whose inode,
size, mtime and ctime are unchanged since the baseline keeps its recorded hash without being
read again (this is what makes the scheduled rescan cheap), files above ``max_hash_bytes`` are
recorded without a hash, and a file replaced while it is read is retried once and otherwise
recorded without a hash. Unreadable files and directories are recorded as far as ``lstat``
allows and reported through ``on_problem("fim", "permission")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

CHUNK = 1 << 20

DEFAULT_FILES = (
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers",
    "/etc/ssh/sshd_config", "/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/crontab",
    "/etc/profile", "/etc/bash.bashrc", "/etc/environment", "/etc/rc.local",
    "/root/.bashrc", "/root/.profile", "/root/.bash_profile", "/root/.bash_login",
    "/root/.ssh/authorized_keys", "/root/.ssh/authorized_keys2",
)
DEFAULT_DIRS = (
    "/etc/sudoers.d", "/etc/ssh/sshd_config.d", "/etc/cron.d", "/etc/cron.hourly",
    "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly", "/var/spool/cron",
    "/etc/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/user", "/etc/pam.d",
    "/etc/profile.d", "/etc/ld.so.conf.d", "/etc/update-motd.d", "/etc/init.d",
    "/var/www",  # web roots: a dropped web shell (rules/file/web_shell_file_created.yml)
)
USER_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2", ".bashrc", ".profile",
              ".bash_profile", ".bash_login", ".bash_logout")

OnProblem = Callable[[str, str], None]


def _ignore(source: str, reason: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class FileState:
    type: str  # file | dir | symlink | other
    mode: int
    uid: int
    gid: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str | None = None
    link_target: str | None = None

    def same_content_key(self, other: FileState) -> bool:
        return (self.inode, self.size, self.mtime_ns, self.ctime_ns) == (
            other.inode, other.size, other.mtime_ns, other.ctime_ns)


@dataclass(frozen=True, slots=True)
class Change:
    path: str  # logical path
    action: str  # created | modified | deleted | attributes_changed
    old: FileState | None
    new: FileState | None
    changes: tuple[str, ...]  # content, mode, owner, type, link


class WatchList:
    """The logical paths to watch: files, recursive directories and users' files."""

    def __init__(self, root: Path, files: Iterable[str], dirs: Iterable[str],
                 exclude: Iterable[str] = (), user_homes: bool = True) -> None:
        self.root = root
        self.files = set(files)
        self.dirs = set(dirs)
        self.exclude = tuple(exclude)
        self.user_homes = user_homes
        if user_homes:
            self.refresh_homes()

    def refresh_homes(self) -> set[str]:
        """Add the files of homes in ``/etc/passwd`` not watched yet (a user created after
        start); returns the logical paths added."""
        added: set[str] = set()
        for home in _homes(self.root):
            for name in USER_FILES:
                path = f"{home.rstrip('/')}/{name}"
                if path not in self.files:
                    added.add(path)
        self.files.update(added)
        return added

    @classmethod
    def default(cls, root: Path, extra: Iterable[str] = (), exclude: Iterable[str] = ()
                ) -> WatchList:
        files, dirs = set(DEFAULT_FILES), set(DEFAULT_DIRS)
        for path in extra:
            (dirs if os.path.isdir(cls.real(root, path)) else files).add(path)
        return cls(root, files, dirs, exclude)

    @staticmethod
    def real(root: Path, logical: str) -> str:
        return os.path.join(str(root), logical.lstrip("/"))

    def logical(self, real: str) -> str:
        rel = os.path.relpath(real, str(self.root))
        return "/" + ("" if rel == "." else rel)

    def excluded(self, logical: str) -> bool:
        return any(Path(logical).match(pattern) for pattern in self.exclude)

    def covers(self, logical: str) -> bool:
        """Whether a path is watched (a listed file, or inside a listed directory)."""
        if logical in self.files:
            return not self.excluded(logical)
        return any(logical == d or logical.startswith(d.rstrip("/") + "/") for d in self.dirs
                   ) and not self.excluded(logical)


def _homes(root: Path) -> list[str]:
    try:
        text = (root / "etc" / "passwd").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    homes = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[5].startswith("/") and parts[5] not in ("/", "/nonexistent"):
            homes.append(parts[5])
    return sorted(set(homes))[:10_000]


def file_state(real: str, previous: FileState | None = None, *, max_hash_bytes: int = 1 << 30,
               on_problem: OnProblem = _ignore) -> FileState | None:
    """The state of one path (``None`` when it does not exist)."""
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return None
    except OSError:
        on_problem("fim", "permission")
        return None
    kind = ("file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
            else "symlink" if stat.S_ISLNK(st.st_mode) else "other")
    base = FileState(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_ino,
                     st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if kind == "symlink":
        try:
            return _with(base, link_target=os.readlink(real))
        except OSError:
            return base
    if kind != "file" or st.st_size > max_hash_bytes:
        return base
    if previous is not None and previous.sha256 and base.same_content_key(previous):
        return _with(base, sha256=previous.sha256)
    return _with(base, sha256=_hash(real, base, on_problem))


def _with(state: FileState, **changes: str | None) -> FileState:
    data = asdict(state)
    data.update(changes)
    return FileState(**data)


def _hash(real: str, expected: FileState, on_problem: OnProblem) -> str | None:
    for _ in range(2):
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            on_problem("fim", "permission")
            return None
        try:
            before = os.fstat(fd)
            if before.st_ino != expected.inode or not stat.S_ISREG(before.st_mode):
                continue  # replaced between lstat and open
            digest = hashlib.sha256()
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                return digest.hexdigest()
        except OSError:
            on_problem("fim", "read_error")
            return None
        finally:
            os.close(fd)
    on_problem("fim", "changed_while_hashing")
    return None


def scan(watch: WatchList, previous: dict[str, FileState], *, max_hash_bytes: int = 1 << 30,
         max_files: int = 200_000, on_problem: OnProblem = _ignore) -> dict[str, FileState]:
    """Every watched path that exists → its state (logical path keys)."""
    out: dict[str, FileState] = {}
    for logical in _walk(watch, max_files, on_problem):
        state = file_state(watch.real(watch.root, logical), previous.get(logical),
                           max_hash_bytes=max_hash_bytes, on_problem=on_problem)
        if state is not None:
            out[logical] = state
    return out


def _walk(watch: WatchList, max_files: int, on_problem: OnProblem) -> Iterator[str]:
    seen = 0
    for logical in sorted(watch.files):
        if not watch.excluded(logical):
            seen += 1
            yield logical
    for top in sorted(watch.dirs):
        real_top = watch.real(watch.root, top)
        if not os.path.isdir(real_top) or os.path.islink(real_top):
            continue
        yield top

        def onerror(exc: OSError) -> None:
            on_problem("fim", "permission")

        for dirpath, dirnames, filenames in os.walk(real_top, onerror=onerror,
                                                    followlinks=False):
            for name in sorted(dirnames) + sorted(filenames):
                logical = watch.logical(os.path.join(dirpath, name))
                if watch.excluded(logical):
                    continue
                seen += 1
                if seen > max_files:
                    on_problem("fim", "too_many_files")
                    return
                yield logical


def diff(old: dict[str, FileState], new: dict[str, FileState]) -> list[Change]:
    changes: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        change = compare(path, old.get(path), new.get(path))
        if change is not None:
            changes.append(change)
    return changes


def compare(path: str, old: FileState | None, new: FileState | None) -> Change | None:
    if old is None and new is None:
        return None
    if old is None:
        return Change(path, "created", None, new, ("content",))
    if new is None:
        return Change(path, "deleted", old, None, ("content",))
    what: list[str] = []
    if old.type != new.type:
        what.append("type")
    if old.type == "file" and new.type == "file" and old.sha256 != new.sha256:
        what.append("content")
    elif old.type == "file" and (old.size != new.size or old.mtime_ns != new.mtime_ns) \
            and (old.sha256 is None or new.sha256 is None):
        what.append("content")  # no hash to compare: size/mtime tell
    if old.link_target != new.link_target:
        what.append("link")
    if old.mode != new.mode:
        what.append("mode")
    if (old.uid, old.gid) != (new.uid, new.gid):
        what.append("owner")
    if not what:
        return None
    action = "modified" if {"content", "type", "link"} & set(what) else "attributes_changed"
    return Change(path, action, old, new, tuple(what))


def save_baseline(path: Path, states: dict[str, FileState]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = {"version": 1, "files": {k: asdict(v) for k, v in states.items()}}
    tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def load_baseline(path: Path) -> dict[str, FileState] | None:
    """The saved baseline, or ``None`` when absent or unreadable (a new one is built)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        return {str(k): FileState(**v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
