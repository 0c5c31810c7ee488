"""Index setup: ILM policy, component templates and index templates, installed idempotently.

Each object carries a version (``version`` for templates, ``_meta.version`` for the ILM
policy). :func:`install` reads what the cluster has and only PUTs what is missing or older,
so running it at every start, after every reconnect and from ``vedette es setup`` costs a few
GETs. Without the privilege to read or write templates it reports ``forbidden``; the shipper
logs one warning and ships anyway (the built-in ``logs-*-*`` template then applies).

Clusters without some modules (Elastic's test distribution has neither ILM nor the
``match_only_text``, ``wildcard`` and ``constant_keyword`` mappers) are detected from their own
answers and adapted to: a mapper type the cluster says "does not exist" is replaced by its
nearest core type (``text``, ``keyword``) and the PUT retried; a cluster without the ILM API
(``no handler found``) gets the data-stream lifecycle (``data_retention``) instead of the ILM
policy. The adaptations are listed in the report (``vedette es setup`` prints them).

Term limit: Lucene refuses a term over 32,766 bytes, and the whole document with it. Every
``keyword`` and ``flattened`` field has ``ignore_above: 1024`` (characters, so at most 4 KiB of
UTF-8): a longer value stays in ``_source`` but is not indexed. :mod:`es_docs` also truncates
very long strings (and says so in the document).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, Elasticsearch

TEMPLATE_VERSION = 2  # 2: ignore_above on flattened fields
PRIORITY = 500  # above the built-in logs-*-* (100) and the 200 reserved for users' overrides
ILM_POLICY = "vedette"
MAPPINGS = "vedette@mappings"
SETTINGS = "vedette@settings"
IGNORE_ABOVE = 1024  # characters; 4 bytes each at most, far below Lucene's 32,766-byte term
# Mapper types of optional modules → the core type that replaces them on a cluster without it.
FALLBACK_TYPES = {"match_only_text": "text", "wildcard": "keyword", "constant_keyword": "keyword"}
_MISSING_TYPE = re.compile(r"The mapper type \[(\w+)\] declared on field")

# ECS field types (elasticsearch.md §5); everything not listed is a keyword via the dynamic
# template. The free-form maps of the alert (group, matched, evidence) are ``flattened``.
_FIELDS: dict[str, str | dict[str, Any]] = {
    "@timestamp": "date",
    "message": "match_only_text",
    "tags": "keyword",
    "labels": {"type": "object", "dynamic": True},
    "ecs.version": "keyword",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    **{f"event.{k}": "keyword" for k in (
        "kind", "category", "type", "id", "dataset", "module", "action", "outcome", "reference")},
    "event.severity": "long",
    "event.risk_score": "float",
    "event.risk_score_norm": "float",
    "event.created": "date",
    "event.start": "date",
    "event.end": "date",
    "event.ingested": "date",
    **{f"rule.{k}": "keyword" for k in (
        "id", "uuid", "name", "description", "reference", "ruleset", "version", "category",
        "author", "license")},
    **{f"threat.{k}": "keyword" for k in (
        "framework", "tactic.id", "tactic.name", "tactic.reference", "technique.id",
        "technique.name", "technique.reference", "technique.subtechnique.id",
        "technique.subtechnique.name")},
    **{f"{side}.{k}": t for side in ("source", "destination", "client", "server")
       for k, t in (("ip", "ip"), ("port", "long"), ("mac", "keyword"), ("domain", "keyword"),
                    ("bytes", "long"), ("packets", "long"), ("geo.location", "geo_point"),
                    ("user.name", "keyword"))},
    **{f"network.{k}": "keyword" for k in (
        "transport", "protocol", "direction", "community_id", "type")},
    "network.bytes": "long",
    "network.packets": "long",
    "dns.question.name": "keyword",
    "dns.question.type": "keyword",
    "dns.response_code": "keyword",
    **{f"host.{k}": "keyword" for k in (
        "name", "hostname", "id", "mac", "os.type", "os.name", "os.kernel", "os.family")},
    "host.ip": "ip",
    **{f"agent.{k}": "keyword" for k in ("id", "name", "type", "version", "ephemeral_id")},
    **{f"observer.{k}": "keyword" for k in (
        "name", "type", "vendor", "product", "version", "hostname")},
    "observer.ip": "ip",
    "process.pid": "long",
    "process.parent.pid": "long",
    "process.command_line": "wildcard",
    **{f"process.{k}": "keyword" for k in (
        "name", "executable", "args", "hash.sha256", "parent.name", "parent.executable")},
    "user.name": "keyword",
    "user.id": "keyword",
    "file.path": "keyword",
    "file.name": "keyword",
    "file.hash.sha256": "keyword",
    "url.full": "wildcard",
    "url.original": "wildcard",
    "url.domain": "keyword",
    "url.path": "wildcard",
    "http.request.method": "keyword",
    "http.response.status_code": "long",
    "user_agent.original": "keyword",
    "related.ip": "ip",
    "related.user": "keyword",
    "related.hosts": "keyword",
    "related.hash": "keyword",
    "vedette.alert.status": "keyword",
    "vedette.alert.count": "long",
    "vedette.alert.revision": "long",
    "vedette.alert.first_seen": "date",
    "vedette.alert.last_seen": "date",
    "vedette.group": "flattened",
    "vedette.matched": "flattened",
    "vedette.evidence": "flattened",
    "vedette.logsource": "flattened",
    "vedette.truncated": "keyword",
}


def ecs_properties(fields: Mapping[str, str | dict[str, Any]] = _FIELDS,
                   replaced: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Dotted field → type map to nested ``properties`` (types in ``replaced`` swapped)."""
    root: dict[str, Any] = {}
    for dotted, spec in fields.items():
        node = root
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        mapping: dict[str, Any] = {"type": spec} if isinstance(spec, str) else dict(spec)
        if replaced and mapping.get("type") in replaced:
            mapping["type"] = replaced[mapping["type"]]
        if mapping.get("type") in ("keyword", "flattened"):
            mapping["ignore_above"] = IGNORE_ABOVE
        node[parts[-1]] = mapping
    return root


def _ilm_policy(delete_after_days: int) -> dict[str, Any]:
    return {
        "policy": {
            "_meta": {"managed_by": "vedette", "version": TEMPLATE_VERSION},
            "phases": {
                "hot": {"actions": {"rollover": {"max_primary_shard_size": "50gb",
                                                 "max_age": "30d"}}},
                "delete": {"min_age": f"{delete_after_days}d", "actions": {"delete": {}}},
            },
        }
    }


def _index_template(pattern: str, data_stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "index_patterns": [pattern],
        "composed_of": [MAPPINGS, SETTINGS] if data_stream else [MAPPINGS],
        "priority": PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "vedette"},
    }
    if data_stream:
        body["data_stream"] = {}
    return body


@dataclass
class Adaptations:
    """What this cluster lacks and what replaces it (empty: the full default distribution)."""

    replaced: dict[str, str] = field(default_factory=dict)  # mapper type → core type
    ilm: bool = True  # False: data-stream lifecycle (``data_retention``) instead of ILM

    def notes(self) -> list[str]:
        out = [f"adapted   mapper type {old} -> {new} (the cluster lacks {old})"
               for old, new in sorted(self.replaced.items())]
        if not self.ilm:
            out.append("adapted   no ILM on the cluster: data-stream lifecycle data_retention "
                       "instead of the ILM policy")
        return out


def desired_objects(
    delete_after_days: int = 90, adapt: Adaptations | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, body) in install order: ILM, component templates, index templates."""
    adapt = adapt or Adaptations()
    mappings = {
        "template": {"mappings": {
            "dynamic_templates": [{"strings_as_keyword": {
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": IGNORE_ABOVE}}}],
            "properties": ecs_properties(replaced=adapt.replaced),
        }},
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "vedette"},
    }
    template: dict[str, Any] = (
        {"settings": {"index.lifecycle.name": ILM_POLICY}} if adapt.ilm
        else {"lifecycle": {"data_retention": f"{delete_after_days}d"}})
    settings = {"template": template, "version": TEMPLATE_VERSION,
                "_meta": {"managed_by": "vedette"}}
    objects: list[tuple[str, str, dict[str, Any]]] = [
        ("ilm", ILM_POLICY, _ilm_policy(delete_after_days))] if adapt.ilm else []
    return [
        *objects,
        ("component", MAPPINGS, mappings),
        ("component", SETTINGS, settings),
        ("index", "logs-vedette.alerts", _index_template("logs-vedette.alerts-*", True)),
        ("index", "logs-vedette.events", _index_template("logs-vedette.events-*", True)),
        ("index", "vedette-alerts-latest", _index_template("vedette-alerts-latest-*", False)),
    ]


_PATHS = {"ilm": "/_ilm/policy/", "component": "/_component_template/",
          "index": "/_index_template/"}


@dataclass
class SetupReport:
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # kind, name, outcome
    statuses: list[int] = field(default_factory=list)  # HTTP status of each failed object
    adaptations: Adaptations = field(default_factory=Adaptations)

    @property
    def forbidden(self) -> bool:
        return any(outcome == "forbidden" for _, _, outcome in self.actions)

    @property
    def ok(self) -> bool:
        return all(o in ("created", "updated", "unchanged") for _, _, o in self.actions)

    @property
    def transient(self) -> bool:
        """A failure worth retrying soon (429, 5xx): the cluster was busy, not refusing."""
        return any(s == 429 or s >= 500 for s in self.statuses)

    def lines(self) -> list[str]:
        return self.adaptations.notes() + [
            f"{outcome:9} {kind} {name}" for kind, name, outcome in self.actions]


def _installed_version(kind: str, name: str, body: Mapping[str, Any]) -> int | None:
    if kind == "ilm":
        version = body.get(name, {}).get("policy", {}).get("_meta", {}).get("version")
    else:
        key = f"{kind}_templates"
        found = [t for t in body.get(key, []) if t.get("name") == name]
        version = found[0].get(f"{kind}_template", {}).get("version") if found else None
    return version if isinstance(version, int) else None


def _no_handler(exc: ApiError) -> bool:
    """The cluster has no such API (a module it lacks), as opposed to a missing object."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else body
    return exc.status_code in (400, 404, 405, 410) and isinstance(error, str) and (
        "no handler found" in error or "Incorrect HTTP method" in error)


def _missing_type(exc: ApiError) -> str | None:
    found = _MISSING_TYPE.search(str(exc.body)) if exc.status_code == 400 else None
    return found.group(1) if found else None


def install(
    client: Elasticsearch, headers: Mapping[str, str], delete_after_days: int = 90
) -> SetupReport:
    """Install what is missing or outdated. Connection errors and 401 propagate (the caller
    retries or reports); 403 stops with ``forbidden``; other API errors are reported per
    object (their status in ``statuses``)."""
    report = SetupReport()
    adapt = report.adaptations
    objects = desired_objects(delete_after_days, adapt)
    index = 0
    force = False  # after an adaptation: PUT everything again (a stored object may have the type)
    while index < len(objects):
        kind, name, body = objects[index]
        index += 1
        path = _PATHS[kind] + name
        try:
            try:
                current = client.perform_request("GET", path, headers=headers).body
                installed = _installed_version(kind, name, current)
            except ApiError as exc:
                if kind == "ilm" and _no_handler(exc):
                    adapt.ilm = False  # no ILM module: the lifecycle goes into the settings
                    objects = desired_objects(delete_after_days, adapt)
                    index = 0
                    continue
                if exc.status_code != 404:
                    raise
                installed = None
            if installed is not None and installed >= TEMPLATE_VERSION and not force:
                report.actions.append((kind, name, "unchanged"))
                continue
            client.perform_request("PUT", path, headers=headers, body=body)
            report.actions.append((kind, name, "created" if installed is None else "updated"))
        except ApiError as exc:
            if exc.status_code == 401:
                raise  # wrong credentials: the caller's problem, not a missing privilege
            if exc.status_code == 403:
                report.actions.append((kind, name, "forbidden"))
                return report
            missing = _missing_type(exc)
            if missing in FALLBACK_TYPES and missing not in adapt.replaced:
                adapt.replaced[missing] = FALLBACK_TYPES[missing]
                objects = desired_objects(delete_after_days, adapt)
                index, force = 0, True  # everything again, with the type replaced
                report.actions.clear()
                continue
            report.statuses.append(exc.status_code)
            report.actions.append((kind, name, f"failed ({exc.status_code} {exc.message})"))
    return report
