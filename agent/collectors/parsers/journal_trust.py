"""Who really wrote a journal entry: the trusted ``_`` fields against the claimed program.

Any local user can write to the journal with any ``SYSLOG_IDENTIFIER`` and ``SYSLOG_PID``
(``logger -t sshd 'Failed password for root from …'``); those two fields, and ``MESSAGE``, are
chosen by the client. journald adds the *trusted* fields itself, from the kernel: ``_UID``,
``_GID`` and ``_PID`` from the socket credentials (``SCM_CREDENTIALS``; a process can only send
its own unless it is root), ``_EXE`` (``/proc/PID/exe``), ``_COMM`` (``/proc/PID/comm``, which
the process can rename with ``prctl``, so it is weaker than ``_EXE``) and ``_SYSTEMD_UNIT``
(the cgroup, which only root can change). See systemd.journal-fields(7).

:func:`verify` accepts an entry as coming from the program it claims only when the trusted
fields say so:

* the program must be the claimed one: ``_EXE`` when journald recorded it (its basename, in
  a directory only root can write: a copy of ``logger`` named ``~/bin/sudo`` is not sudo),
  else ``_COMM``, else the unit (``ssh.service``, ``cron.service`` …) — whichever is the
  strongest field present decides, a weaker one cannot overrule it; for setuid programs only
  ``_EXE`` counts;
* programs that run as root (sshd, cron, login, shadow-utils run by root) must have
  ``_UID=0``; setuid programs (sudo, su, passwd) log with the invoking user's real uid, so for
  them only the executable is checked;
* an entry that claims one of the programs whose messages Vedette classifies, but has none of
  these fields (``_TRANSPORT=kernel``, an export stripped of them), cannot be attributed and is
  refused as well;
* any other identifier is trusted, unless its message is one Vedette classifies (a
  ``pam_unix`` failure, a ``new user:`` line): then it must come from root (``_UID=0``) or be
  one of the known setuid PAM helpers (``SETUID_PAM_HELPERS``) run from its executable in a
  system directory (``logger -t logger …`` or a script logging as ``python3`` is refused).

A refused entry is never a login or an account change: the caller turns it into a
``vedette``/``log_forgery`` event (rule ``log_forgery``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Program:
    names: frozenset[str]
    """Executable basenames / comm values of the genuine program."""
    root: bool
    """True when the genuine program always logs with real uid 0."""
    unit: re.Pattern[str] | None = None


def _program(*names: str, root: bool, unit: str | None = None) -> Program:
    return Program(frozenset(names), root, re.compile(unit) if unit else None)


_SSHD = _program("sshd", "sshd-session", "sshd-auth", root=True,
                 unit=r"sshd?(?:@[^/]*)?\.service")
_CRON = _program("cron", "crond", root=True, unit=r"crond?\.service")
# Claimed SYSLOG_IDENTIFIER -> the genuine program. The account tools are root-only when they
# change accounts; passwd, chfn, chsh, su, sudo, newgrp and gpasswd are setuid.
PROGRAMS: dict[str, Program] = {
    "sshd": _SSHD, "sshd-session": _SSHD, "sshd-auth": _SSHD,
    "sudo": _program("sudo", root=False),
    "su": _program("su", root=False),
    "cron": _CRON, "CRON": _CRON, "crond": _CRON,
    "login": _program("login", root=True),
    **{name: _program(name, root=True) for name in (
        "useradd", "userdel", "usermod", "groupadd", "groupdel", "groupmod", "chpasswd",
        "newusers", "chage")},
    **{name: _program(name, root=False) for name in ("passwd", "gpasswd", "chfn", "chsh")},
}
# Where genuine programs live: only root can write there, so a copy of logger named
# ~/bin/sudo is not sudo (/usr/lib/openssh/sshd-session, /usr/lib/polkit-1/… are under /usr).
# setuid/setgid programs (real uid: the invoking user) that log PAM messages of their own
SETUID_PAM_HELPERS = frozenset({"polkit-agent-helper-1", "pkexec", "unix_chkpwd", "newgrp",
                                "sg", "doas"})
SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")
_COMM_MAX = 15  # TASK_COMM_LEN - 1: /proc/PID/comm is cut


@dataclass(frozen=True, slots=True)
class Verdict:
    trusted: bool
    reason: str = ""
    """Bounded reason name when not trusted: wrong_uid, wrong_executable, no_trusted_fields."""


TRUSTED = Verdict(True)


def _str(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def verify(entry: dict[str, Any], claimed: str, classified: bool) -> Verdict:
    """Whether ``entry`` (which claims to be ``claimed``) really comes from that program.

    ``classified`` says whether its message is one Vedette turns into an auth/account event;
    entries from programs Vedette does not know are trusted unless their message is one.
    """
    program = PROGRAMS.get(claimed)
    uid, exe = _str(entry, "_UID"), _str(entry, "_EXE")
    if program is None:
        if not classified or uid == "0":
            # root can write anything anyway, and root daemons log auth messages under many
            # identifiers (adduser is a Perl script, "(systemd)" opens PAM sessions)
            return TRUSTED
        # an unknown identifier with an auth message from a non-root writer: only a known
        # setuid PAM helper (polkit-agent-helper-1), and only its own executable; anything
        # else (logger, python3, perl) writes whatever its unprivileged user wants
        if claimed not in SETUID_PAM_HELPERS:
            return Verdict(False, "wrong_uid")
        program = _program(claimed, root=False)
    comm, unit = _str(entry, "_COMM"), _str(entry, "_SYSTEMD_UNIT")
    if uid is None and exe is None and comm is None and unit is None:
        return Verdict(False, "no_trusted_fields")
    if program.root and uid != "0":
        return Verdict(False, "wrong_uid")
    if exe is not None:
        directory, _, name = exe.removesuffix(" (deleted)").rpartition("/")
        ok = name in program.names and (directory + "/").startswith(SYSTEM_PREFIXES)
    elif not program.root:
        ok = False  # setuid programs: only the executable proves it (anyone can set a comm)
    elif comm is not None:
        ok = any(comm == name[:_COMM_MAX] for name in program.names)
    elif unit is not None and program.unit is not None:
        ok = program.unit.fullmatch(unit) is not None
    else:
        ok = False
    return TRUSTED if ok else Verdict(False, "wrong_executable")
