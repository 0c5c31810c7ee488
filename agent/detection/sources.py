"""Which rules the configuration asks for, loading them, and refusing to run blind.

Rule search is additive: the rules shipped with Vedette (``detection.shipped_rules``), then
third-party folders (``detection.extra_rule_paths``), then the operator's local folders
(``detection.rule_paths``, default ``/etc/vedette/rules`` when it exists), each of which may add
rules or override a shipped one by giving a rule with the same id.

:func:`blind_spots` is the one definition of "this rule set would leave the agent blind", used
by ``vedette run`` at start-up (refuse, exit 2), on reload (keep the old set) and by
``vedette config check``: no rule compiled, a configured rule path missing or unreadable, or
every rule for the logsource of an enabled collector rejected. ``detection.allow_empty`` turns
the refusal off for operators who want an agent without rules on purpose.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from agent.config import Config, DetectionSection
from agent.detection.loader import LoadReport
from agent.detection.path_trust import load_trusted_rules
from agent.detection.rule import CorrelationRule

Key = tuple[str | None, str | None, str | None]

_AUTH_SERVICES = ("sshd", "auth", "sudo", "syslog", "cron", "su", "vsftpd", "clamav",
                  "guacamole")
_NETWORK = ("network_packet", "network_traffic", "network_flow", "dns", "arp", "network_ssh",
            "ipv6_nd", "capture_health", "network_sessions", "network_icmp_echo")

# Config section (== collector builder) -> the logsources its events carry (agent/detection/
# fields.py). A section missing here produces no logsource of its own.
SECTION_LOGSOURCES: dict[str, tuple[Key, ...]] = {
    "process": (("linux", "process_creation", None), ("vedette", "process_cpu", None),
                ("vedette", "process_uid_change", None)),
    "sockets": (("linux", "network_connection", None), ("vedette", "listening_socket", None)),
    "auth_logs": (*(("linux", None, s) for s in _AUTH_SERVICES),
                  ("vedette", "log_integrity", None)),
    "web_logs": (("vedette", "web_access", None),),
    "auditd": (("linux", None, "auditd"),),
    "fim": (("linux", "file_event", None),),
    "kernel_modules": (("vedette", "kernel_module", None),),
    "host_metrics": (("vedette", "host_metrics", None),),
    "capture": tuple(("vedette", c, None) for c in _NETWORK),
}


def load_configured(detection: DetectionSection, *, metrics: Any = None) -> LoadReport:
    """The configured rule set: shipped, third-party, then local folders (override by id).

    Paths that users other than root and the agent can write are refused first
    (:mod:`agent.detection.path_trust`); the refusals are rule errors and
    ``report.internal_alerts``.
    """
    return load_trusted_rules(
        detection.shipped_rule_paths(), list(detection.extra_rule_paths),
        local_paths=detection.local_rule_paths(),
        allow_unsafe=detection.allow_unsafe_rule_paths, metrics=metrics)[0]


def watched_paths(detection: DetectionSection) -> list[Path]:
    """Every rule folder whose files a reload reads (for ``detection.watch_rules``)."""
    return [*detection.shipped_rule_paths(), *detection.extra_rule_paths,
            *detection.local_rule_paths()]


def path_problems(detection: DetectionSection) -> list[str]:
    """Configured rule paths that are missing or unreadable, as ``path: reason (option)``."""
    out: list[str] = []
    if detection.shipped_rules and not detection.shipped_rule_paths():
        out.append("the rules shipped with Vedette are not installed (no agent/shipped_rules, "
                   "no /usr/share/vedette/rules); set detection.shipped_rules: false to run "
                   "on local rules only")
    for option, paths in (("detection.rule_paths", detection.rule_paths),
                          ("detection.extra_rule_paths", detection.extra_rule_paths)):
        for path in paths:
            problem = _unreadable(path)
            if problem:
                out.append(f"{path}: {problem} ({option})")
    return out


def _unreadable(path: Path) -> str | None:
    try:
        path.stat()
    except FileNotFoundError:
        return "no such file or directory"
    except OSError as exc:
        return f"cannot access: {exc.strerror or exc}"
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    if not os.access(path, mode):
        return "not readable by this user"
    return None


def blind_spots(config: Config, report: LoadReport) -> list[str]:
    """Why this rule set leaves an enabled part of the agent without rules ([] when fine)."""
    detection = config.detection
    if detection.allow_empty:
        return []
    out = path_problems(detection)
    if report.compiled == 0:
        out.append(f"no rules loaded ({report.summary_line()}); set detection.allow_empty: "
                   "true to run without rules")
        return out
    compiled: Counter[Key] = Counter(
        r.logsource for r in report.ruleset.rules() if not isinstance(r, CorrelationRule))
    rejected: dict[Key, list[str]] = {}
    for rejection in report.rejections:
        if rejection.logsource is not None:
            rejected.setdefault(rejection.logsource, []).append(str(rejection))
    for section, keys in SECTION_LOGSOURCES.items():
        if not getattr(getattr(config, section), "enabled", False):
            continue
        for key in keys:
            if key in rejected and not compiled[key]:
                reasons = rejected[key]
                text = "/".join(p for p in key if p)
                out.append(f"every rule for logsource {text} (collector {section}) was "
                           f"rejected ({len(reasons)}), e.g. {reasons[0]}")
    return out
