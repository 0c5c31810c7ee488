"""In-memory cluster state of the fake Elasticsearch: templates, ILM, data streams, documents.

Behaviour follows ``/work/shared/reference/elasticsearch.md`` (§3, §4). Where the real server's
behaviour is not pinned down there, this module picks the documented/observed one and says so:

* Dynamic mapping is not modelled: fields without a mapping from the matching index template
  are accepted as-is. Mapped fields are type-checked (ip, long/integer/short/byte, float/
  double/scaled_float, date, boolean, geo_point, constant_keyword value) and a mismatch is a
  per-item 400 ``document_parsing_exception`` — real ES also checks many other things.
* An ``index`` op on a name that resolves to a data stream (existing, or auto-created through a
  template with ``data_stream: {}``) gets 400 ``illegal_argument_exception``. Real ES creates
  the data stream before rejecting the op; so do we (unsure, harmless either way).
* ``version_type=external`` / ``external_gte`` follow the index API: a version lower than (or,
  for ``external``, equal to) the stored one is 409 ``version_conflict_engine_exception``.
* ``update`` and ``delete`` bulk ops are not supported here (400) — the agent never sends them.
* There is one backing index per data stream (no rollover); ``_seq_no`` is per index.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BUILTIN_LOGS_TEMPLATE: dict[str, Any] = {
    "index_patterns": ["logs-*-*"],
    "data_stream": {},
    "composed_of": [],
    "priority": 100,
    "_meta": {"managed": True, "description": "built-in logs template (simplified)"},
}
_INT_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
_FLOAT_TYPES = {"float", "double", "half_float", "scaled_float"}


class ItemError(Exception):
    """A per-item failure: HTTP status, ES error type and reason."""

    def __init__(self, status: int, type_: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type_
        self.reason = reason

    def body(self, index: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "reason": self.reason}
        if index:
            err["index"] = index
        return err


@dataclass
class Doc:
    id: str
    index: str
    source: dict[str, Any]
    version: int
    seq_no: int


@dataclass
class Index:
    name: str
    mappings: dict[str, dict[str, Any]]  # dotted path → field mapping
    data_stream: str | None = None
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    docs: dict[str, Doc] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class DataStream:
    name: str
    template: str
    backing: Index
    ilm_policy: str | None


def flatten_mappings(props: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(flatten_mappings(spec["properties"], path + "."))
        elif "type" in spec and spec["type"] != "object":
            out[path] = spec
    return out


def _flatten_doc(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.append((path, value))
            out.extend(_flatten_doc(value, path + "."))
        else:
            out.append((path, value))
    return out


def _check_value(path: str, mapping: dict[str, Any], value: Any) -> str | None:
    """Why ``value`` does not fit ``mapping`` (None if it does)."""
    kind = mapping["type"]
    if value is None or kind in ("flattened", "object", "nested"):
        return None
    if isinstance(value, list):
        for item in value:
            problem = _check_value(path, mapping, item)
            if problem:
                return problem
        return None
    if isinstance(value, dict) and kind != "geo_point":
        return f"Can't get text on a START_OBJECT for field [{path}]"
    try:
        if kind == "ip":
            ipaddress.ip_address(str(value))
        elif kind in _INT_TYPES:
            if isinstance(value, bool) or float(value) != int(float(value)):
                return f"Value [{value}] has a decimal part"
        elif kind in _FLOAT_TYPES:
            float(value)
        elif kind == "date":
            if not isinstance(value, int | float):
                datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        elif kind == "boolean":
            if value not in (True, False, "true", "false", ""):
                return f"Failed to parse value [{value}] as only [true] or [false] are allowed."
        elif kind == "geo_point":
            if isinstance(value, dict):
                float(value["lat"])
                float(value["lon"])
            else:
                lat, lon = str(value).split(",")
                float(lat)
                float(lon)
        elif kind == "constant_keyword" and "value" in mapping and value != mapping["value"]:
            return (f"[constant_keyword] field [{path}] only accepts values that are equal to"
                    f" the value defined in the mappings [{mapping['value']}], but got [{value}]")
    except (ValueError, TypeError, KeyError):
        return f"'{value}' is not a valid value for a field of type [{kind}]"
    return None


class Cluster:
    """Everything the fake server stores; all methods are thread-safe."""

    def __init__(self, version: str = "9.1.0") -> None:
        self.version = version
        self.lock = threading.RLock()
        self.ilm_policies: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.index_templates: dict[str, dict[str, Any]] = {"logs": BUILTIN_LOGS_TEMPLATE}
        self.data_streams: dict[str, DataStream] = {}
        self.indices: dict[str, Index] = {}
        self.template_puts: dict[str, int] = {}  # "kind/name" → PUT count (for idempotence tests)
        self.check_mappings = True
        # Benchmark mode: keep document sources as raw bytes (only @timestamp presence and
        # ids are checked) so that the fake's JSON parsing does not dominate the measurement.
        self.raw_sources = False

    # ------------------------------------------------------------------ templates

    def put(self, kind: str, name: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.template_puts[f"{kind}/{name}"] = self.template_puts.get(f"{kind}/{name}", 0) + 1
            if kind == "ilm":
                self.ilm_policies[name] = {"version": len(self.ilm_policies) + 1,
                                           "modified_date": time.time(), "policy": body["policy"]}
            elif kind == "component":
                if "template" not in body:
                    raise ItemError(400, "action_request_validation_exception",
                                    "Validation Failed: 1: template is missing;")
                self.component_templates[name] = body
            elif kind == "index":
                missing = [c for c in body.get("composed_of", [])
                           if c not in self.component_templates]
                if missing:
                    raise ItemError(400, "invalid_index_template_exception",
                                    f"index_template [{name}] invalid, cause [index template "
                                    f"[{name}] specifies component templates {missing} that "
                                    "do not exist]")
                self.index_templates[name] = body

    def match_template(self, name: str) -> tuple[str, dict[str, Any]] | None:
        best: tuple[str, dict[str, Any]] | None = None
        for tname, tmpl in self.index_templates.items():
            hit = any(fnmatch.fnmatchcase(name, p) for p in tmpl.get("index_patterns", []))
            if hit and (best is None or tmpl.get("priority", 0) > best[1].get("priority", 0)):
                best = (tname, tmpl)
        return best

    def _template_mappings(
        self, tmpl: dict[str, Any]
    ) -> tuple[dict[str, dict[str, Any]], str | None]:
        mappings: dict[str, dict[str, Any]] = {}
        policy: str | None = None
        sources = [self.component_templates.get(c, {}) for c in tmpl.get("composed_of", [])]
        sources.append(tmpl)
        for src in sources:
            template = src.get("template", {})
            mappings.update(flatten_mappings(template.get("mappings", {}).get("properties", {})))
            settings = template.get("settings", {})
            policy = settings.get("index.lifecycle.name") or settings.get(
                "index", {}).get("lifecycle", {}).get("name") or policy
        return mappings, policy

    # ------------------------------------------------------------------ writes

    def resolve_write(self, name: str, op: str) -> Index:
        """The index a bulk op on ``name`` writes into, auto-creating it as real ES would."""
        # Fast path (every document of a bulk request comes here): names already known were
        # validated when they were created, and nothing is ever deleted.
        known = self.data_streams.get(name)
        if known is not None and op == "create":
            return known.backing
        if known is None and (index := self.indices.get(name)) is not None:
            return index
        if name != name.lower() or name.startswith(("_", "-", "+")):
            raise ItemError(400, "invalid_index_name_exception",
                            f"Invalid index name [{name}], must be lowercase")
        with self.lock:
            ds = self.data_streams.get(name)
            if ds is None and name not in self.indices:
                matched = self.match_template(name)
                mappings, policy = self._template_mappings(matched[1]) if matched else ({}, None)
                if matched and "data_stream" in matched[1]:
                    day = time.strftime("%Y.%m.%d", time.gmtime())
                    backing = Index(f".ds-{name}-{day}-000001", mappings, data_stream=name)
                    self.indices[backing.name] = backing
                    ds = DataStream(name, matched[0], backing, policy)
                    self.data_streams[name] = ds
                else:
                    self.indices[name] = Index(name, mappings)
            if ds is not None:
                if op != "create":
                    raise ItemError(400, "illegal_argument_exception",
                                    "only write ops with an op_type of create are allowed in "
                                    "data streams")
                return ds.backing
            return self.indices[name]

    def write(self, op: str, name: str, doc_id: str | None, source: Any,
              version: int | None = None, version_type: str | None = None) -> dict[str, Any]:
        """Apply one bulk ``create``/``index`` op; returns the item body or raises ItemError."""
        if op not in ("create", "index"):
            raise ItemError(400, "illegal_argument_exception",
                            f"bulk op [{op}] is not supported by the test server")
        raw = isinstance(source, bytes)  # benchmark mode: sources kept unparsed
        if not raw and not isinstance(source, dict):
            raise ItemError(400, "document_parsing_exception",
                            "[1:1] failed to parse: document is not an object")
        index = self.resolve_write(name, op)
        marker = b'"@timestamp"' if raw else "@timestamp"
        if index.data_stream is not None and marker not in source:
            raise ItemError(400, "document_parsing_exception",
                            "[1:1] failed to parse: data stream timestamp field [@timestamp] "
                            "is missing")
        for path, value in _flatten_doc(source) if self.check_mappings and not raw else ():
            mapping = index.mappings.get(path)
            problem = mapping and _check_value(path, mapping, value)
            if problem:
                preview = str(value)[:50]
                raise ItemError(400, "document_parsing_exception",
                                f"[1:2] failed to parse field [{path}] of type "
                                f"[{mapping['type'] if mapping else '?'}] in document with id "
                                f"'{doc_id}'. Preview of field's value: '{preview}' ({problem})")
        doc_id = doc_id or uuid.uuid4().hex[:20]
        with self.lock:
            existing = index.docs.get(doc_id)
            if op == "create" and existing is not None:
                raise ItemError(409, "version_conflict_engine_exception",
                                f"[{doc_id}]: version conflict, document already exists "
                                f"(current version [{existing.version}])")
            new_version = existing.version + 1 if existing else 1
            if version_type in ("external", "external_gte") and version is not None:
                stale = existing is not None and (
                    version < existing.version
                    or (version == existing.version and version_type == "external")
                )
                if stale and existing is not None:
                    raise ItemError(409, "version_conflict_engine_exception",
                                    f"[{doc_id}]: version conflict, current version "
                                    f"[{existing.version}] is higher or equal to the one "
                                    f"provided [{version}]")
                new_version = version
            doc = Doc(doc_id, index.name, source, new_version, next(index.seq))
            index.docs[doc_id] = doc
        return {
            "_index": index.name, "_id": doc_id, "_version": new_version,
            "result": "updated" if existing else "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": doc.seq_no, "_primary_term": 1,
            "status": 200 if existing else 201,
        }

    # ------------------------------------------------------------------ reads

    def resolve_read(self, target: str) -> list[Index]:
        out: list[Index] = []
        with self.lock:
            for part in target.split(","):
                for name, ds in self.data_streams.items():
                    if fnmatch.fnmatchcase(name, part):
                        out.append(ds.backing)
                for name, idx in self.indices.items():
                    if idx.data_stream is None and fnmatch.fnmatchcase(name, part):
                        out.append(idx)
        return out

    def docs(self, target: str) -> list[Doc]:
        with self.lock:
            return [d for idx in self.resolve_read(target) for d in idx.docs.values()]

    def get_data_stream(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            ds = self.data_streams.get(name)
            if ds is None:
                return None
            return {
                "name": ds.name, "timestamp_field": {"name": "@timestamp"},
                "indices": [{"index_name": ds.backing.name, "index_uuid": ds.backing.uuid}],
                "generation": 1, "status": "GREEN", "template": ds.template,
                "ilm_policy": ds.ilm_policy, "hidden": False, "system": False,
            }

    def create_data_stream(self, name: str) -> None:
        with self.lock:
            if name in self.data_streams:
                raise ItemError(400, "resource_already_exists_exception",
                                f"data_stream [{name}] already exists")
            matched = self.match_template(name)
            if not matched or "data_stream" not in matched[1]:
                raise ItemError(400, "illegal_argument_exception",
                                f"no matching index template found for data stream [{name}]")
            self.resolve_write(name, "create")
