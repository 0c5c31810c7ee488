"""Log collectors: rotation-safe tailing of files, the systemd journal, JSON-lines event files.

The lines they read are turned into events by :mod:`agent.collectors.parsers` (pure). Each
collector's ``build`` is beside it; :data:`BUILDERS` names them by config section.
"""

from __future__ import annotations

from agent.collectors.base import Builder
from agent.collectors.logs import auth, collector, event_files

BUILDERS: dict[str, Builder] = {
    "auth_logs": auth.build,
    "web_logs": collector.build_web_logs,
    "auditd": collector.build_auditd,
    "event_files": event_files.build,
}
