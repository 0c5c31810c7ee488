"""Regenerate tests/rules/benign/*.jsonl: 30 minutes of an ordinary web server (deterministic).

Run ``python tests/rules/benign/generate.py``; the output only changes when this file does.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import random
from typing import Any

OUT = pathlib.Path(__file__).resolve().parent
T0 = 1767258000.0  # 2026-01-01T09:00:00Z
rnd = random.Random(42)


def iso(t: float) -> str:
    stamp = datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def write(name: str, events: list[dict[str, Any]]) -> None:
    events.sort(key=lambda e: e["@timestamp"])
    (OUT / name).write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))


PC = {"product": "linux", "category": "process_creation"}
ROUTINE = [
    ("/usr/bin/bash", "/bin/bash /usr/local/bin/backup.sh", "root", "/usr/sbin/cron"),
    ("/usr/bin/tar", "tar czf /var/backups/www-2026-01-01.tgz /var/www", "root", "/usr/bin/bash"),
    ("/usr/bin/gzip", "gzip -9 /var/log/nginx/access.log.1", "root", "/usr/sbin/logrotate"),
    ("/usr/sbin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf", "root",
     "/usr/lib/systemd/systemd"),
    ("/usr/bin/python3", "python3 /srv/app/manage.py clearsessions", "www-data", "/usr/sbin/cron"),
    ("/usr/bin/git", "git -C /srv/app pull --ff-only", "deploy", "/usr/bin/bash"),
    ("/usr/bin/systemctl", "systemctl reload nginx", "root", "/usr/bin/sudo"),
    ("/usr/bin/ls", "ls -la /var/log/nginx", "alice", "/usr/bin/bash"),
    ("/usr/bin/df", "df -h", "alice", "/usr/bin/bash"),
    ("/usr/bin/journalctl", "journalctl -u nginx --since today", "alice", "/usr/bin/bash"),
    ("/usr/bin/apt-get", "apt-get update", "root", "/usr/bin/sudo"),
    ("/usr/bin/dpkg", "dpkg --configure -a", "root", "/usr/bin/apt-get"),
    ("/usr/sbin/nginx", "nginx -t", "root", "/usr/bin/systemctl"),
    ("/usr/bin/rsync", "rsync -a /srv/app/static/ /var/www/static/", "deploy", "/usr/bin/bash"),
    ("/usr/bin/grep", "grep -c 500 /var/log/nginx/access.log", "alice", "/usr/bin/bash"),
    ("/usr/bin/vim", "vim /etc/nginx/sites-available/app", "alice", "/usr/bin/bash"),
    ("/usr/bin/sleep", "sleep 60", "root", "/usr/bin/bash"),
]


def process_events() -> list[dict[str, Any]]:
    out = []
    for i in range(600):
        exe, cmd, user, parent = rnd.choice(ROUTINE)
        out.append({
            "@timestamp": iso(T0 + i * 3 + rnd.random()), "logsource": PC,
            "process.executable": exe, "process.name": exe.rsplit("/", 1)[1],
            "process.command_line": cmd, "process.pid": 20000 + i,
            "process.parent.executable": parent, "user.name": user,
            "process.working_directory": "/root" if user == "root" else f"/home/{user}",
        })
    return out


def host_metrics() -> list[dict[str, Any]]:
    out = []
    for i in range(180):
        busy = 0.97 if 30 <= i < 34 else 0.2 + 0.1 * rnd.random()  # a 40 s build spike
        out.append({
            "@timestamp": iso(T0 + i * 10),
            "logsource": {"product": "vedette", "category": "host_metrics"},
            "event.dataset": "vedette.host_metrics", "host.name": "web-1",
            "host.cpu.usage": busy, "host.cpu.count": 4, "system.load.1": 1.2,
            "system.load.5": 1.0, "system.load.15": 0.9,
            "system.memory.used.pct": 0.55 + 0.05 * rnd.random(), "system.swap.used.pct": 0.0,
            "system.filesystem.max_used.pct": 0.61, "system.process.count": 180,
            "system.thread.count": 420, "system.fd.open": 3100, "system.users.count": 1,
            "host.uptime": 86400 + i * 10,
        })
    return out


FILES = ["/var/www/static/app.css", "/etc/nginx/sites-available/app",
         "/var/backups/www-2026-01-01.tgz", "/home/alice/.bash_history", "/srv/app/static/app.js"]
PAGES = ["/", "/index.html", "/static/app.css", "/static/app.js", "/api/items?page=2", "/login",
         "/favicon.ico"]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def file_events() -> list[dict[str, Any]]:
    return [{"@timestamp": iso(T0 + i * 30),
             "logsource": {"product": "linux", "category": "file_event"},
             "file.path": rnd.choice(FILES), "process.executable": "/usr/bin/rsync",
             "event.action": "modified"} for i in range(50)]


def web_access() -> list[dict[str, Any]]:
    out = []
    for i in range(600):
        path = rnd.choice(PAGES)
        status = 200 if rnd.random() > 0.03 else 404
        out.append({
            "@timestamp": iso(T0 + i * 3),
            "logsource": {"product": "vedette", "category": "web_access"},
            "source.ip": f"198.51.100.{rnd.randrange(1, 60)}",
            "http.request.method": "POST" if path == "/login" else "GET",
            "http.response.status_code": status, "url.path": path.split("?")[0],
            "url.original": path, "http.response.body.bytes": rnd.randrange(200, 80000),
            "user_agent.original": BROWSER,
        })
    return out


if __name__ == "__main__":
    write("process_creation.jsonl", process_events())
    write("host_metrics.jsonl", host_metrics())
    write("file_event.jsonl", file_events())
    write("web_access.jsonl", web_access())
