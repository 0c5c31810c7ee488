"""Is a package manager running right now? (attribution of file changes to a transaction).

inotify does not say which process changed a file. When a unit file, cron file or init script
changes while ``dpkg``/``rpm`` (or apt, dnf, yum, zypper driving them) is running, the change is
almost always the package's own. :func:`running_package_manager` scans ``/proc`` for such a
process — by the *executable path* the kernel reports (``/proc/<pid>/exe``), never by ``comm``,
which any process can set to ``dpkg`` — and returns the outermost one (apt rather than the
dpkg it runs), whose pid then names the transaction (when none runs any more, a package
database changed in the last 10 s names it: a short ``dpkg -i`` may be over before the change
is read); FIM events carry
``vedette.fim.package_manager`` and ``vedette.fim.package_transaction`` and the persistence
rules fold them into one low alert per transaction. A root attacker can still hide a change
behind a real ``dpkg -i`` of their own package; that is folded to low too (docs/host.md).
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

MANAGERS = frozenset({
    "/usr/bin/dpkg", "/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/aptitude",
    "/usr/bin/unattended-upgrade", "/usr/bin/rpm", "/usr/bin/dnf", "/usr/bin/yum",
    "/usr/bin/zypper", "/usr/bin/dnf-3", "/usr/libexec/dnf-5", "/usr/bin/dnf5",
})
_INTERPRETED = ("unattended-upgrade", "yum", "dnf")  # python scripts: exe is python


class PackageManager(NamedTuple):
    pid: int
    executable: str
    transaction: str = ""


# A transaction that just ended: dpkg rewrites its status file (and the updates journal) at
# the end of each run, rpm its database. A unit unpacked by a ``dpkg -i`` that takes 0.2 s may
# be seen only after dpkg exited.
DATABASES = (("/var/lib/dpkg/updates", "/usr/bin/dpkg"), ("/var/lib/dpkg/status", "/usr/bin/dpkg"),
             ("/var/lib/rpm/rpmdb.sqlite", "/usr/bin/rpm"),
             ("/var/lib/rpm/Packages", "/usr/bin/rpm"))
RECENT_SECONDS = 10.0


def package_activity(proc_root: str = "/proc", fs_root: str = "/",
                     now: float | None = None) -> PackageManager | None:
    """A running package manager, else one whose database changed in the last seconds."""
    running = running_package_manager(proc_root)
    if running is not None:
        return running._replace(transaction=str(running.pid))
    now = time.time() if now is None else now
    for path, exe in DATABASES:
        try:
            mtime = os.stat(os.path.join(fs_root, path.lstrip("/"))).st_mtime
        except OSError:
            continue
        if abs(now - mtime) <= RECENT_SECONDS:
            return PackageManager(0, exe, f"{os.path.basename(exe)}@{int(mtime)}")
    return None


def running_package_manager(proc_root: str = "/proc") -> PackageManager | None:
    """The outermost running package manager, or ``None``."""
    found: dict[int, tuple[str, int]] = {}  # pid -> (executable, ppid)
    try:
        entries = [e.name for e in os.scandir(proc_root) if e.name.isdigit()]
    except OSError:
        return None
    for name in entries:
        base = f"{proc_root}/{name}"
        try:
            exe = os.readlink(f"{base}/exe")
        except OSError:
            continue
        if exe not in MANAGERS:
            if not exe.startswith("/usr/bin/python"):
                continue
            script = _script(base)
            if script is None or os.path.basename(script) not in _INTERPRETED:
                continue
            exe = script
        found[int(name)] = (exe, _ppid(base))
    if not found:
        return None
    for pid, (exe, ppid) in sorted(found.items()):
        if ppid not in found:
            return PackageManager(pid, exe)
    pid = min(found)
    return PackageManager(pid, found[pid][0])


def _ppid(base: str) -> int:
    try:
        with open(f"{base}/stat", "rb") as fh:
            rest = fh.read(1024).rsplit(b")", 1)[1].split()
        return int(rest[1])
    except (OSError, IndexError, ValueError):
        return 0


def _script(base: str) -> str | None:
    try:
        with open(f"{base}/cmdline", "rb") as fh:
            args = fh.read(4096).split(b"\0")
    except OSError:
        return None
    if len(args) > 1 and args[1].startswith(b"/usr/"):
        return args[1].decode("utf-8", "replace")
    return None
