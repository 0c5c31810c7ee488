"""The alert model and its rendering as an ECS document.

An :class:`Alert` is one (rule, group) incident. The detection engine opens it, updates it while
the attack goes on (``count``, ``last_seen``, a bounded evidence sample) and closes it after a
quiet period; every change bumps ``revision``. ``id`` is deterministic — a hash of rule id,
group key and window start — so that every sink can deduplicate retries and updates.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from agent.attack import threat_fields
from agent.events import format_timestamp
from agent.identity import Identity

ECS_VERSION = "9.4.0"
DATASET = "vedette.alerts"


class Status(StrEnum):
    OPEN = "open"
    UPDATED = "updated"
    CLOSED = "closed"


# Sigma level → (event.severity, event.risk_score); risk scores follow Elastic Security's bands.
LEVELS: dict[str, tuple[int, int]] = {
    "informational": (1, 0),
    "low": (2, 21),
    "medium": (3, 47),
    "high": (4, 73),
    "critical": (5, 99),
}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """What an alert needs to know of the rule that raised it."""

    id: str
    title: str
    level: str = "medium"
    description: str = ""
    author: str = ""
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    ruleset: str = "vedette"
    version: str = "1"
    license: str = ""


@dataclass(slots=True)
class Alert:
    id: str
    rule: RuleRef
    group: dict[str, Any]
    first_seen: float
    last_seen: float
    count: int = 1
    status: Status = Status.OPEN
    revision: int = 0
    matched: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    categories: tuple[str, ...] = ("intrusion_detection",)

    def snapshot(self) -> Alert:
        """A copy safe to hand to sinks while the engine keeps updating the original."""
        return replace(
            self,
            group=dict(self.group),
            matched=dict(self.matched),
            evidence=[dict(e) for e in self.evidence],
        )


def alert_id(rule_id: str, group: dict[str, Any], window_start: float) -> str:
    """Deterministic id: same rule, group and window start → same id, on any host restart."""
    key = json.dumps(
        [rule_id, sorted((k, str(v)) for k, v in group.items()), round(window_start, 6)],
        separators=(",", ":"),
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# ECS top-level objects whose fields an alert copies from its matched event.
_ECS_OBJECTS = frozenset(
    {
        "source", "destination", "network", "dns", "process", "user", "file", "url", "http",
        "user_agent", "tls", "service", "group", "client", "server",
    }
)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}``; a key that collides with an object is skipped."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        ok = True
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                ok = False
                break
            node = child
        if ok and not isinstance(node.get(parts[-1]), dict):
            # a copy: a later "a.b.c" key descends into this dict and must not mutate the alert
            node[parts[-1]] = copy.deepcopy(value) if isinstance(value, dict) else value
    return out


def _related(fields: dict[str, Any]) -> dict[str, list[str]]:
    ips, users, hosts = [], [], []
    for key, value in fields.items():
        if value is None or isinstance(value, dict | list):
            continue
        if key.endswith(".ip"):
            ips.append(str(value))
        elif key in ("user.name", "source.user.name", "destination.user.name"):
            users.append(str(value))
        elif key.endswith((".domain", "dns.question.name")):
            hosts.append(str(value))
    related = {"ip": sorted(set(ips)), "user": sorted(set(users)), "hosts": sorted(set(hosts))}
    return {k: v for k, v in related.items() if v}


def to_ecs(alert: Alert, identity: Identity, namespace: str = "default") -> dict[str, Any]:
    """Render an alert as the ECS document that every sink writes (elasticsearch.md §5)."""
    severity, risk = LEVELS.get(alert.rule.level, LEVELS["medium"])
    ecs_fields = {
        k: v for k, v in {**alert.matched, **alert.group}.items()
        if k.split(".", 1)[0] in _ECS_OBJECTS and "." in k
    }
    doc: dict[str, Any] = nest(ecs_fields)
    doc.update(
        {
            "@timestamp": format_timestamp(alert.first_seen),
            "ecs": {"version": ECS_VERSION},
            "message": alert.message or alert.rule.title,
            "tags": sorted(set(alert.rule.tags)),
            "event": {
                "kind": "alert",
                "category": list(alert.categories),
                "type": ["info"],
                "severity": severity,
                "risk_score": float(risk),
                "risk_score_norm": float(risk),
                "id": alert.id,
                "dataset": DATASET,
                "module": "vedette",
                "start": format_timestamp(alert.first_seen),
                "end": format_timestamp(alert.last_seen),
                "created": format_timestamp(alert.first_seen),
            },
            "rule": {
                "id": alert.rule.id,
                "name": alert.rule.title,
                "description": alert.rule.description,
                "reference": list(alert.rule.references),
                "ruleset": alert.rule.ruleset,
                "version": alert.rule.version,
                "author": [a.strip() for a in alert.rule.author.split(",") if a.strip()],
                "license": alert.rule.license,
            },
            "host": {
                "name": identity.host_name,
                "hostname": identity.host_name,
                "id": identity.host_id,
                "ip": list(identity.host_ips),
                "os": {"type": "linux", "name": identity.os_name, "kernel": identity.os_kernel},
            },
            "agent": {
                "id": identity.agent_id,
                "name": identity.agent_name,
                "type": "vedette",
                "version": identity.version,
                "ephemeral_id": identity.ephemeral_id,
            },
            "observer": {
                "type": "ids",
                "vendor": "Vedette",
                "product": "Vedette",
                "version": identity.version,
                "hostname": identity.host_name,
            },
            "data_stream": {"type": "logs", "dataset": DATASET, "namespace": namespace},
            "vedette": {
                "alert": {
                    "status": str(alert.status),
                    "count": alert.count,
                    "revision": alert.revision,
                    "first_seen": format_timestamp(alert.first_seen),
                    "last_seen": format_timestamp(alert.last_seen),
                },
                "group": {k: _scalar(v) for k, v in alert.group.items()},
                "matched": {k: _scalar(v) for k, v in alert.matched.items()},
                "evidence": alert.evidence,
            },
        }
    )
    threat = threat_fields(alert.rule.tags)
    if threat:
        doc["threat"] = threat
    related = _related({**alert.matched, **alert.group})
    if identity.host_name and identity.host_name not in related.get("hosts", []):
        related.setdefault("hosts", []).append(identity.host_name)
    if related:
        doc["related"] = related
    if identity.labels:
        doc["labels"] = dict(identity.labels)
    return doc


def _scalar(value: Any) -> Any:
    """Values of the ``vedette.group``/``vedette.matched`` maps are kept as strings/numbers."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
