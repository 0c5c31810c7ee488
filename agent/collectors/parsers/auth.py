"""Authentication log messages (sshd, sudo, su, PAM, shadow-utils) → ECS fields and events.

:func:`auth_fields` classifies the message part of one line from its program name; the
:func:`auth_event` wrapper adds the syslog header and builds the :class:`Event`. Everything here
is pure: no I/O, no clock except the injected :class:`SyslogClock`.

Attacker-controlled text (user names given to sshd, sudo command lines) sits in the *middle* of
sshd's messages while the trusted part (`` from IP port N``) is appended by sshd at the end, so
the patterns are anchored at the end and take the user name greedily: a user name that contains
`` from 10.0.0.1 port 22`` or ``sshd[1]: Accepted …`` ends up inside ``user.name`` and cannot
change the source address or the outcome. Source addresses are accepted only when they parse
as IP addresses.

Events have logsource ``linux`` with service ``sshd``, ``sudo``, ``su``, ``cron`` or ``auth``
(every other program of the auth facility) and keep the whole sanitised line in ``message`` so
SigmaHQ keyword rules work on them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from agent.collectors.parsers.syslog import SyslogClock, parse_header
from agent.events import Event, LogSource

Fields = dict[str, Any]

SERVICES = {"sshd": "sshd", "sshd-session": "sshd", "sshd-auth": "sshd", "sudo": "sudo",
            "su": "su", "cron": "cron", "CRON": "cron", "crond": "cron"}
LOGSOURCES = {name: LogSource("linux", None, name) for name in ("sshd", "sudo", "su", "cron",
                                                               "auth")}

_TAIL = r" from (?P<ip>\S+) port (?P<port>\d{1,5})"
_SSH_ACCEPTED = re.compile(r"Accepted (?P<method>\S+) for (?P<user>.*)" + _TAIL +
                           r"(?: ssh2)?(?:: .*)?")
_SSH_FAILED = re.compile(r"Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*)" +
                         _TAIL + r"(?: ssh2)?(?:: .*)?")
_SSH_INVALID = re.compile(r"[Ii]nvalid user (?P<user>.*)" + _TAIL)
_SSH_CLOSED = re.compile(
    r"(?P<kind>Connection closed|Disconnected) (?:by|from) "
    r"(?:(?P<who>invalid user|authenticating user|user) (?P<user>.*) )?"
    r"(?P<ip>[0-9A-Fa-f.:]+) port (?P<port>\d{1,5})(?P<preauth> \[preauth\])?")
_SSH_RECEIVED_DISC = re.compile(
    r"Received disconnect from (?P<ip>[0-9A-Fa-f.:]+) port (?P<port>\d{1,5}):.*?"
    r"(?P<preauth> \[preauth\])?")
_SSH_MAX_AUTH = re.compile(
    r"error: maximum authentication attempts exceeded for (?P<invalid>invalid user )?"
    r"(?P<user>.*)" + _TAIL + r"(?: ssh2)?(?: \[preauth\])?")
_SSH_NO_IDENT = re.compile(r"Did not receive identification string from (?P<ip>\S+)"
                           r"(?: port (?P<port>\d{1,5}))?")
_SSH_BANNER = re.compile(r"banner exchange: Connection from (?P<ip>\S+) port (?P<port>\d{1,5}):")
_PAM_FAILURE = re.compile(
    r"pam_unix\((?P<svc>[\w-]+):auth\): authentication failure;.*? rhost=(?P<rhost>\S*)"
    r"(?:\s+user=(?P<user>.*))?")
_PAM_SESSION = re.compile(
    r"pam_unix\((?P<svc>[\w-]+):session\): session (?P<state>opened|closed) for user "
    r"(?P<user>[^\s(]+)(?:\(uid=(?P<uid>\d+)\))?(?: by (?P<by>[^\s(]*)(?:\(uid=\d+\))?)?")
_PAM_PASSWORD = re.compile(
    r"pam_unix\((?P<svc>[\w-]+):chauthtok\): password changed for (?P<user>\S+)")
_SUDO = re.compile(r"\s*(?P<user>\S+) : (?P<body>.*)")
_SU_OK = re.compile(r"\(to (?P<target>[^)\s]+)\) (?P<user>\S+) on (?P<tty>\S+)")
_SU_FAIL = re.compile(r"FAILED SU \(to (?P<target>[^)\s]+)\) (?P<user>\S+) on (?P<tty>\S+)")
_NEW_USER = re.compile(r"new user: name=(?P<name>[^,]+), UID=(?P<uid>-?\d+), GID=(?P<gid>-?\d+)"
                       r"(?:, home=(?P<home>[^,]*))?(?:, shell=(?P<shell>[^,]*))?")
_NEW_GROUP = re.compile(r"(?:new group|group added to /etc/group): name=(?P<name>[^,]+), "
                        r"GID=(?P<gid>-?\d+)")
_ADD_TO_GROUP = re.compile(r"add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'")
_GPASSWD_ADD = re.compile(r"user (?P<user>\S+) added by \S+ to group (?P<group>\S+)")
_UID_CHANGE = re.compile(r"change user '(?P<user>[^']+)' UID from '(?P<old>-?\d+)' to "
                         r"'(?P<uid>-?\d+)'")
_DEL_USER = re.compile(r"delete user '(?P<user>[^']+)'")
_LOGIN_FAIL = re.compile(r"FAILED LOGIN \(\d+\) on '(?P<tty>[^']*)'(?: FROM '(?P<host>[^']*)')? "
                         r"FOR '(?P<user>[^']*)'")
_PRIVILEGED_GROUPS = frozenset({"root", "sudo", "wheel", "adm", "admin", "shadow", "disk",
                                "docker", "lxd", "libvirt"})


@lru_cache(maxsize=8192)
def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4/IPv6 address, or ``None`` (cached: sources repeat)."""
    if len(text) > 45:
        return None
    try:
        socket.inet_pton(socket.AF_INET, text)
        return text
    except (OSError, ValueError):  # ValueError: embedded NUL
        pass
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(addr)


def _source(fields: Fields, ip: str | None, port: str | None = None) -> None:
    if not ip:
        return
    canonical = canonical_ip(ip)
    if canonical is None:
        fields["source.domain"] = ip[:255]
        return
    fields["source.ip"] = canonical
    if port:
        fields["source.port"] = int(port)


def _auth(action: str, outcome: str, user: str | None = None, extra: Fields | None = None
          ) -> Fields:
    fields: Fields = {"event.category": "authentication", "event.action": action,
                      "event.outcome": outcome}
    if user is not None:
        fields["user.name"] = user
    if extra:
        fields.update(extra)
    return fields


def sshd_fields(msg: str) -> Fields | None:
    first = msg[:1]
    m = _SSH_FAILED.fullmatch(msg) if first == "F" else None
    if m:
        f = _auth("ssh_login", "failure", m["user"], {"vedette.auth.method": m["method"]})
        if m["invalid"]:
            f["vedette.auth.invalid_user"] = True
        _source(f, m["ip"], m["port"])
        return f
    m = _SSH_ACCEPTED.fullmatch(msg) if first == "A" else None
    if m:
        f = _auth("ssh_login", "success", m["user"], {"vedette.auth.method": m["method"]})
        _source(f, m["ip"], m["port"])
        return f
    m = _SSH_INVALID.fullmatch(msg) if first in "Ii" else None
    if m:
        f = _auth("ssh_invalid_user", "failure", m["user"], {"vedette.auth.invalid_user": True})
        _source(f, m["ip"], m["port"])
        return f
    m = _SSH_CLOSED.fullmatch(msg) if first in "CD" else None
    if m:
        f = _auth("ssh_disconnect", "unknown", m["user"])
        if m["who"] == "invalid user":
            f["vedette.auth.invalid_user"] = True
        f["vedette.auth.preauth"] = bool(m["preauth"])
        _source(f, m["ip"], m["port"])
        return f
    m = _SSH_RECEIVED_DISC.fullmatch(msg) if first == "R" else None
    if m:
        f = _auth("ssh_disconnect", "unknown", None, {"vedette.auth.preauth": bool(m["preauth"])})
        _source(f, m["ip"], m["port"])
        return f
    m = _SSH_MAX_AUTH.fullmatch(msg) if first == "e" else None
    if m:
        f = _auth("ssh_max_auth_exceeded", "failure", m["user"])
        _source(f, m["ip"], m["port"])
        return f
    m = (_SSH_NO_IDENT.fullmatch(msg) or _SSH_BANNER.match(msg)) if first in "Db" else None
    if m:
        f = _auth("ssh_bad_protocol", "failure")
        _source(f, m["ip"], m["port"])
        return f
    return _pam_fields(msg)


def _pam_fields(msg: str) -> Fields | None:
    if not msg.startswith("pam_unix("):
        return None
    m = _PAM_FAILURE.match(msg)
    if m:
        user = m["user"].strip() if m["user"] else None
        f = _auth("pam_auth_failure", "failure", user or None,
                  {"vedette.pam.service": m["svc"]})
        _source(f, m["rhost"] or None)
        return f
    m = _PAM_SESSION.match(msg)
    if m:
        f = _auth(f"session_{m['state']}", "success", m["user"],
                  {"vedette.pam.service": m["svc"], "event.category": "session"})
        if m["uid"]:
            f["user.id"] = m["uid"]
        if m["by"]:
            f["user.effective.name"] = m["by"]
        return f
    m = _PAM_PASSWORD.match(msg)
    if m:
        return _auth("password_changed", "success", m["user"],
                     {"vedette.pam.service": m["svc"], "event.category": "iam"})
    return None


_SUDO_FAILURES = {
    "incorrect password attempt": "incorrect_password",
    "user NOT in sudoers": "not_in_sudoers",
    "command not allowed": "command_not_allowed",
    "a password is required": "password_required",
    "user NOT authorized on host": "not_authorized_on_host",
}


def sudo_fields(msg: str) -> Fields | None:
    """``alice : [reason ; ]TTY=… ; PWD=… ; USER=… ; [GROUP=… ; ][ENV=… ; ]COMMAND=…``.

    The invoking user (first, from the password database) and a failure reason (before the
    first ``KEY=``) are sudo's own text. PWD and COMMAND are the user's, unescaped, and
    surround USER: a directory named ``/tmp/x ; USER=root`` makes the target user
    undecidable, so when the line has more than one `` ; USER=``, ``user.target.name`` is
    left out and ``vedette.sudo.ambiguous`` set. The command is everything after the
    first ``COMMAND=`` (command lines contain `` ; `` themselves).
    """
    m = _SUDO.fullmatch(msg)
    if m is None:
        return _pam_fields(msg)
    head, sep, command = m["body"].partition(" ; COMMAND=")
    if not sep and head.startswith("COMMAND="):
        head, command, sep = "", head[8:], " ; COMMAND="
    parts = [p.strip() for p in head.split(" ; ")]
    kv: dict[str, str] = {}
    reason = None
    users = 0
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and key.isupper() and key.isalpha():
            users += key == "USER"
            kv.setdefault(key, value)
        elif reason is None and not kv:
            reason = part
    if not sep and "USER" not in kv:
        return None
    f = _auth("sudo", "success", m["user"])
    f["event.category"] = "process"
    if reason:
        f["event.outcome"] = "failure"
        f["event.reason"] = next((v for k, v in _SUDO_FAILURES.items() if k in reason), "other")
    if users > 1 or m["body"].count(" ; USER=") > 1:
        f["vedette.sudo.ambiguous"] = True
    elif "USER" in kv:
        f["user.target.name"] = kv["USER"]
    if sep:
        f["process.command_line"] = command
    if "TTY" in kv:
        f["process.tty.name"] = kv["TTY"]
    if "PWD" in kv:
        f["process.working_directory"] = kv["PWD"]
    return f


def su_fields(msg: str) -> Fields | None:
    m = _SU_FAIL.fullmatch(msg)
    if m:
        return _auth("su", "failure", m["user"], {"user.target.name": m["target"],
                                                     "process.tty.name": m["tty"]})
    m = _SU_OK.fullmatch(msg)
    if m:
        return _auth("su", "success", m["user"], {"user.target.name": m["target"],
                                                     "process.tty.name": m["tty"]})
    return _pam_fields(msg)


def account_fields(msg: str) -> Fields | None:
    """shadow-utils (useradd, groupadd, usermod, userdel, gpasswd), passwd, login."""
    m = _NEW_USER.match(msg)
    if m:
        f = _auth("user_created", "success", None, {
            "event.category": "iam", "user.target.name": m["name"].strip(),
            "user.target.id": m["uid"], "user.target.group.id": m["gid"]})
        if m["shell"]:
            f["vedette.user.shell"] = m["shell"]
        return f
    m = _NEW_GROUP.match(msg)
    if m:
        return _auth("group_created", "success", None, {
            "event.category": "iam", "group.name": m["name"].strip(), "group.id": m["gid"]})
    m = _ADD_TO_GROUP.match(msg) or _GPASSWD_ADD.match(msg)
    if m:
        group = m["group"]
        return _auth("user_added_to_group", "success", None, {
            "event.category": "iam", "user.target.name": m["user"], "group.name": group,
            "vedette.group.privileged": group in _PRIVILEGED_GROUPS})
    m = _UID_CHANGE.match(msg)
    if m:
        return _auth("user_uid_changed", "success", None, {
            "event.category": "iam", "user.target.name": m["user"], "user.target.id": m["uid"],
            "vedette.user.previous_id": m["old"]})
    m = _DEL_USER.match(msg)
    if m:
        return _auth("user_deleted", "success", None, {
            "event.category": "iam", "user.target.name": m["user"]})
    m = _LOGIN_FAIL.match(msg)
    if m:
        f = _auth("login", "failure", m["user"], {"process.tty.name": m["tty"]})
        _source(f, m["host"] or None)
        return f
    return _pam_fields(msg)


_BY_SERVICE: dict[str, Callable[[str], Fields | None]] = {
    "sshd": sshd_fields, "sudo": sudo_fields, "su": su_fields, "auth": account_fields,
    "cron": _pam_fields,
}


def auth_fields(program: str, message: str) -> Fields | None:
    """ECS fields of one message from ``program``; ``None`` for messages we do not classify."""
    service = SERVICES.get(program, "auth")
    return _BY_SERVICE[service](message)


# Most auth-log lines repeat word for word (cron and session lines, the same sudo commands):
# their classification, which depends on the message alone, is kept per service. Messages that
# name a source address also carry a port and never repeat, so they are not kept. Bounded: a
# full cache is emptied (hostile unique messages cost one dictionary insert each, no more).
_CACHE_MAX = 1024
_UNCLASSIFIED: Fields = {}
_CACHES: dict[str, dict[str, Fields]] = {service: {} for service in _BY_SERVICE}


def _classify(service: str, message: str) -> Fields:
    """A fresh fields dict for ``message`` (empty when it is not classified)."""
    cache = _CACHES[service]
    known = cache.get(message)
    if known is not None:
        return known.copy()
    fields = _BY_SERVICE[service](message)
    if fields is None:
        fields = {}
    elif "source.ip" in fields or "source.domain" in fields:
        return fields
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[message] = fields.copy() if fields else _UNCLASSIFIED
    return fields


def auth_event(
    text: str, clock: SyslogClock, *, path: str | None = None
) -> Event | None:
    """One sanitised syslog line → an event (``None`` when it has no syslog header).

    Lines whose message is not recognised still become events (logsource by program, with
    ``message``) so keyword rules see them; they carry no ``event.action``.
    """
    header = parse_header(text, clock)
    if header is None:
        return None
    timestamp, hostname, program, pid, message = header
    return build_auth_event(timestamp, hostname, program, pid, message, text, path=path)


def build_auth_event(
    timestamp: float,
    hostname: str,
    program: str,
    pid: int | None,
    message: str,
    line: str,
    *,
    path: str | None = None,
) -> Event:
    """The event of one auth message, from a syslog line or a journal entry."""
    service = SERVICES.get(program, "auth")
    fields = _classify(service, message)  # a fresh dict: extended in place
    fields["message"] = line
    fields["event.dataset"] = "linux.auth"
    fields["process.name"] = program
    fields["log.syslog.hostname"] = hostname
    if pid is not None:
        fields["process.pid"] = pid
    if path is not None:
        fields["log.file.path"] = path
    return Event(timestamp, LOGSOURCES[service], fields)
