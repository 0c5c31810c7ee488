"""What ``/proc`` says about a process, read defensively (it may exit while we read).

:class:`ProcReader` reads ``/proc/<pid>`` under an injected proc root: executable (with the
kernel's `` (deleted)`` marker turned into a flag), command line, working directory, real and
effective uid/gid, parent pid, start time, container id (from the cgroup path) and whether
stdin/stdout/stderr are sockets (the mark of a reverse shell). Each file that cannot be read
(exited process, permission) is simply absent from the result; :func:`process_fields` turns an
:class:`ProcInfo` into ECS fields, adding the parent and grandparent; :func:`uid_change_fields`
describes a process whose real or effective uid changed.
"""

from __future__ import annotations

import os
import pwd
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.events import format_timestamp

_CONTAINER = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)[-/:]([0-9a-f]{64})"
                        r"|/kubepods[^\n]*/(?:pod[^/]+/)?([0-9a-f]{64})")
MAX_CMDLINE = 8192
_STATUS_KEYS = re.compile(r"^(Name|PPid|Uid|Gid):(.*)$", re.MULTILINE)
_UID_LINE = re.compile(r"^Uid:[ \t]+([0-9]+)[ \t]+([0-9]+)", re.MULTILINE)
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash",
                    "busybox"})
_BUSYBOX_SHELLS = frozenset({"sh", "ash", "hush", "bash"})


@dataclass(slots=True)
class ProcInfo:
    pid: int
    ppid: int | None = None
    executable: str | None = None
    deleted: bool = False
    args: list[str] | None = None
    cwd: str | None = None
    comm: str | None = None
    uid: int | None = None
    euid: int | None = None
    gid: int | None = None
    start_ticks: int | None = None
    container_id: str | None = None
    socket_fds: tuple[int, ...] = ()  # stdio fds that are TCP/UDP sockets
    socket_inode: str | None = None  # inode of the first of them: shared by a whole session
    stdin_pipe: str | None = None  # pipe inodes of stdin/stdout: ``curl … | sh`` relates by them
    stdout_pipe: str | None = None
    stdout_file: str | None = None  # stdout redirected to a file (``curl … > /tmp/x``)
    unix_socket_fds: tuple[int, ...] = ()  # stdio fds that are other sockets (journald …)
    gone: bool = False  # the process exited before anything could be read


class ProcReader:
    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._root = str(proc_root)
        self._users: OrderedDict[int, str | None] = OrderedDict()
        try:
            self._ticks = os.sysconf("SC_CLK_TCK")
        except (ValueError, OSError):
            self._ticks = 100
        self._boot = _boot_time(proc_root)

    def read(self, pid: int, *, full: bool = True, extras_only: bool = False) -> ProcInfo:
        """What ``/proc/<pid>`` says; ``full=False`` (parents and grandparents) stops after
        executable, command line, name, ids and parent pid — all an ancestor is described by.
        ``extras_only``: the caller has the kernel's exec facts (argv, ids, cwd) and wants only
        the executable link, start time, container and stdio sockets."""
        base = f"{self._root}/{pid}"
        info = ProcInfo(pid)
        if extras_only:
            exe = _readlink(f"{base}/exe")
            if exe is None:
                info.gone = True
                return info
            if exe.endswith(" (deleted)"):
                info.deleted, exe = True, exe[: -len(" (deleted)")]
            info.executable = exe
            self._extras(base, info)
            return info
        # the most valuable facts first: a short-lived process may be gone a moment later
        exe = _readlink(f"{base}/exe")
        if exe is not None:
            if exe.endswith(" (deleted)"):
                info.deleted, exe = True, exe[: -len(" (deleted)")]
            info.executable = exe
        raw = _read_bytes(f"{base}/cmdline", MAX_CMDLINE, whole=True)
        if raw:
            info.args = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
        status = _read_text(f"{base}/status", 4096, whole=True)
        if status is None:
            info.gone = exe is None and not raw
            return info
        for key, value in _STATUS_KEYS.findall(status):  # 4 of ~60 lines, in one scan
            if key == "Name":
                info.comm = value.strip()
            elif key == "PPid":
                info.ppid = _int(value)
            elif key == "Uid":
                ids = value.split()
                info.uid, info.euid = _int(ids[0]) if ids else None, _int(ids[1]) if len(
                    ids) > 1 else None
            elif key == "Gid":
                ids = value.split()
                info.gid = _int(ids[0]) if ids else None
        if not full:
            return info
        info.cwd = _readlink(f"{base}/cwd")
        self._extras(base, info)
        return info

    @staticmethod
    def _extras(base: str, info: ProcInfo) -> None:
        stat = _read_text(f"{base}/stat", 2048, whole=True)
        if stat and ")" in stat:
            rest = stat.rsplit(")", 1)[1].split()
            if len(rest) > 19:
                info.start_ticks = _int(rest[19])
        cgroup = _read_text(f"{base}/cgroup", 8192, whole=True)
        if cgroup:
            m = _CONTAINER.search(cgroup)
            if m:
                info.container_id = m.group(1) or m.group(2)
        links = [_readlink(f"{base}/fd/{fd}") or "" for fd in (0, 1, 2)]
        sockets = {fd: link[8:-1] for fd, link in enumerate(links) if link.startswith("socket:[")}
        if links[0].startswith("pipe:["):
            info.stdin_pipe = links[0][6:-1]
        if links[1].startswith("pipe:["):
            info.stdout_pipe = links[1][6:-1]
        elif links[1].startswith("/") and not links[1].startswith("/dev/"):
            info.stdout_file = links[1]
        if sockets:
            inet = _network_fds(base, sockets)
            info.socket_fds = tuple(fd for fd in sockets if fd in inet)
            info.unix_socket_fds = tuple(fd for fd in sockets if fd not in inet)
            if info.socket_fds:
                info.socket_inode = sockets[info.socket_fds[0]]

    def holds_network_socket(self, pid: int, limit: int = 1024) -> bool:
        """Whether the process has a TCP/UDP socket open on any descriptor (the relay of a
        shell whose stdio is a pty or socketpair: ``pty.spawn``, ``ncat -e``, ``socat EXEC``)."""
        base = f"{self._root}/{pid}"
        try:
            fds = os.listdir(f"{base}/fd")[:limit]
        except OSError:
            return False
        sockets = {int(fd): link[8:-1] for fd in fds if fd.isdigit()
                   and (link := _readlink(f"{base}/fd/{fd}") or "").startswith("socket:[")}
        return bool(sockets) and bool(_network_fds(base, sockets))

    def pids(self) -> list[int]:
        """The process ids under the proc root (empty when it cannot be listed)."""
        try:
            return [int(e.name) for e in os.scandir(self._root)
                    if e.name.isascii() and e.name.isdigit()]
        except OSError:
            return []

    def uids(self, pid: int) -> tuple[int, int] | None:
        """Real and effective uid from ``status`` (``None`` when gone or unreadable)."""
        status = _read_text(f"{self._root}/{pid}/status", 4096, whole=True)
        m = _UID_LINE.search(status or "")
        if m is None:
            return None
        return int(m[1]), int(m[2])

    def start_time(self, info: ProcInfo) -> float | None:
        if info.start_ticks is None or self._boot is None:
            return None
        return self._boot + info.start_ticks / self._ticks

    def user_name(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        if uid in self._users:
            return self._users[uid]
        try:
            name: str | None = pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            name = None
        self._users[uid] = name
        if len(self._users) > 1024:
            self._users.popitem(last=False)
        return name


def process_fields(reader: ProcReader, info: ProcInfo, parent: ProcInfo | None,
                   grandparent: ProcInfo | None) -> dict[str, Any]:
    """ECS fields of a process_creation event (absent values are left out)."""
    f: dict[str, Any] = {"process.pid": info.pid}
    _describe(f, "process.", info)
    if info.ppid is not None:
        f["process.parent.pid"] = info.ppid
    if info.uid is not None:
        f["user.id"] = str(info.uid)
        name = reader.user_name(info.uid)
        if name:
            f["user.name"] = name
    if info.euid is not None and info.euid != info.uid:
        f["user.effective.id"] = str(info.euid)
        name = reader.user_name(info.euid)
        if name:
            f["user.effective.name"] = name
    if info.gid is not None:
        f["group.id"] = str(info.gid)
    if info.cwd:
        f["process.working_directory"] = info.cwd
    start = reader.start_time(info)
    if start is not None:
        f["process.start"] = format_timestamp(start)
    if info.container_id:
        f["container.id"] = info.container_id
    f["process.io.socket"] = bool(info.socket_fds)
    if info.socket_fds:
        f["process.io.socket_fds"] = list(info.socket_fds)
    if info.unix_socket_fds:
        f["vedette.process.io.local_socket_fds"] = list(info.unix_socket_fds)
    if info.socket_inode:
        f["vedette.process.io.socket_inode"] = info.socket_inode
    if info.stdin_pipe:
        f["vedette.process.io.stdin_pipe"] = info.stdin_pipe
    if info.stdout_pipe:
        f["vedette.process.io.stdout_pipe"] = info.stdout_pipe
    if info.deleted:
        f["process.executable_deleted"] = True
    if parent is not None and not parent.gone:
        _describe(f, "process.parent.", parent)
        if parent.uid is not None:
            name = reader.user_name(parent.uid)
            if name:
                f["process.parent.user.name"] = name
    if grandparent is not None and not grandparent.gone:
        f["process.parent.parent.pid"] = grandparent.pid
        _describe(f, "process.parent.parent.", grandparent)
    return f


def uid_change_fields(reader: ProcReader, info: ProcInfo, parent: ProcInfo | None,
                      ids: tuple[int, int], previous: tuple[int, int] | None) -> dict[str, Any]:
    """ECS fields of a uid change: the ids come from the kernel's event (``/proc`` may already
    show a later change), the description of the process from ``/proc`` (best effort)."""
    f: dict[str, Any] = {"process.pid": info.pid}
    _describe(f, "process.", info)
    if info.ppid is not None:
        f["process.parent.pid"] = info.ppid
    if parent is not None and not parent.gone:
        _describe(f, "process.parent.", parent)
    for prefix, uid in (("user.", ids[0]), ("user.effective.", ids[1])):
        f[prefix + "id"] = str(uid)
        name = reader.user_name(uid)
        if name:
            f[prefix + "name"] = name
    if previous is not None:
        f["vedette.process.previous_uid"] = str(previous[0])
        f["vedette.process.previous_euid"] = str(previous[1])
    return f


INTERPRETERS = ("python", "perl", "ruby", "php", "node", "lua", "tclsh", "awk", "gawk")


def script_path(info: ProcInfo) -> str | None:
    """The script file a shell or interpreter runs (``sh /tmp/x``, or the kernel's ``#!``
    rewrite of ``/tmp/x`` to ``/bin/sh /tmp/x``): the first operand, made absolute."""
    args = info.args
    if not args or len(args) < 2 or not info.executable:
        return None
    name = os.path.basename(info.executable)
    if name not in SHELLS and not name.startswith(INTERPRETERS):
        return None
    shell = name in SHELLS
    for arg in args[1:4]:
        if arg == "-c" or (shell and arg.startswith("-") and not arg.startswith("--")
                           and "c" in arg):
            return None  # -c: the operand is a command, not a file
        if not shell and arg in ("-m", "-e", "-E", "-r"):
            return None  # a module or an inline program
        if not arg.startswith("-"):
            if not arg.startswith("/"):
                if not info.cwd:
                    return None
                arg = os.path.join(info.cwd, arg)
            return os.path.normpath(arg)
    return None


def stdin_program(info: ProcInfo) -> bool | None:
    """Whether a shell or interpreter reads its program from stdin (``curl … | sh``,
    ``| python3``, ``| perl -``); ``None`` for other programs."""
    args = info.args
    if not args or not info.executable:
        return None
    name = os.path.basename(info.executable)
    if name in SHELLS:
        return interactive_shell(args)
    if not name.startswith(INTERPRETERS):
        return None
    for arg in args[1:]:
        if arg == "-":
            return True
        if arg in ("-c", "-e", "-E", "-r", "-m") or not arg.startswith("-"):
            return False
    return True


def is_shell(info: ProcInfo) -> bool:
    name = os.path.basename(info.executable) if info.executable else info.comm
    return name in SHELLS


def interactive_shell(args: list[str] | None) -> bool:
    """A shell that reads commands from its stdio: no ``-c`` and no script operand."""
    if not args:
        return False
    rest = args[1:]
    if os.path.basename(args[0]) == "busybox" and rest and rest[0] in _BUSYBOX_SHELLS:
        rest = rest[1:]  # ``busybox sh``: the applet, not a script
    for arg in rest:
        if not arg.startswith("-"):
            return False  # a script (or -c's command)
        if not arg.startswith("--") and "c" in arg[1:]:
            return False  # -c, -ec, -ic …
    return True


def _describe(f: dict[str, Any], prefix: str, info: ProcInfo) -> None:
    if info.executable:
        f[prefix + "executable"] = info.executable
    name = os.path.basename(info.executable) if info.executable else info.comm
    if name:
        f[prefix + "name"] = name
    if info.args:
        f[prefix + "args"] = info.args
        f[prefix + "command_line"] = " ".join(info.args)
    elif info.comm and prefix == "process.":
        f[prefix + "command_line"] = info.comm


# socket protocol names (the sockfs ``system.sockprotoname`` attribute) of network sockets
_NETWORK_PROTOCOLS = frozenset({b"TCP", b"TCPv6", b"UDP", b"UDPv6", b"UDPLITE", b"UDPLITEv6",
                                b"MPTCP", b"MPTCPv6"})


def _network_fds(base: str, sockets: dict[int, str]) -> set[int]:
    """Which stdio fds (fd -> socket inode) are network sockets.

    The kernel names each socket's protocol in the ``system.sockprotoname`` attribute: one
    system call per fd. Only when that is unavailable are the process's ``net`` tables read,
    which walks the whole TCP hash table (milliseconds on a large host) — per exec of every
    systemd service child, whose stdout is journald's UNIX socket.
    """
    network: set[int] = set()
    unknown: dict[int, str] = {}
    for fd, inode in sockets.items():
        try:
            name = os.getxattr(f"{base}/fd/{fd}", "system.sockprotoname")
        except OSError:
            unknown[fd] = inode
            continue
        if name.rstrip(b"\0") in _NETWORK_PROTOCOLS:
            network.add(fd)
    if unknown:
        inet = _inet_inodes(base, set(unknown.values()))
        network.update(fd for fd, inode in unknown.items() if inode in inet)
    return network


def _inet_inodes(base: str, wanted: set[str]) -> set[str]:
    """Which of the socket inodes are TCP/UDP sockets (in the process's network namespace).

    Services started by systemd write to journald through a UNIX socket, so a socket on
    stdout alone does not make a reverse shell; only network sockets count.
    """
    found: set[str] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        data = _read_bytes(f"{base}/net/{table}", 4 << 20)
        if not data:
            continue
        for line in data.split(b"\n")[1:]:
            parts = line.split(None, 10)
            if len(parts) > 9:
                inode = parts[9].decode("ascii", "replace")
                if inode in wanted:
                    found.add(inode)
        if found == wanted:
            break
    return found


def _boot_time(root: Path) -> float | None:
    text = _read_text(f"{root}/stat", 1 << 16)
    for line in (text or "").splitlines():
        if line.startswith("btime "):
            return _int(line[6:])
    return None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read_bytes(path: str, limit: int, *, whole: bool = False) -> bytes | None:
    """Up to ``limit`` bytes of a ``/proc`` file; plain ``os`` calls (half the CPU of
    ``open()``, whose buffered file objects matter when every exec reads five files).

    ``whole``: a per-process file the kernel renders in one piece (``status``, ``stat``,
    ``cgroup``, ``cmdline``): the first read returns all of it up to ``limit``, so the read that
    would only confirm the end is skipped. Tables (``net/tcp``) are read until the end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, limit)
        if whole or not data or len(data) >= limit:
            return data
        chunks = [data]  # seq_file tables (net/tcp) come a page at a time
        size = len(data)
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_text(path: str, limit: int, *, whole: bool = False) -> str | None:
    data = _read_bytes(path, limit, whole=whole)
    return data.decode("utf-8", "replace") if data is not None else None


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
