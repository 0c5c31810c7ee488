"""What the Elasticsearch sink writes: stream names and ready-to-send ``_bulk`` lines.

Every alert snapshot (open, each update, close) becomes two bulk operations, both idempotent:

1. ``create`` into the data stream ``logs-vedette.alerts-<ns>`` with
   ``_id = <alert id>-<revision>``: the alert's history, one document per snapshot. Data
   streams are create-only; a resend after a timeout or a crash gets 409 and is counted as a
   duplicate avoided.
2. ``index`` into the regular index ``vedette-alerts-latest-<ns>`` with ``_id = <alert id>``,
   ``version = revision + 1`` and ``version_type = external``: one document per alert that
   converges to the newest snapshot whatever the order or number of deliveries (Elasticsearch
   refuses an equal or older version with 409). The name stays outside ``logs-*-*`` so that
   the built-in data-stream template never captures it.

Raw events (optional) are ``create``\\ d into ``logs-vedette.events-<ns>`` with an ``_id`` hashed
from their content, so a resend is a 409 too.

Long strings: any string value over ``MAX_STRING_BYTES`` (8 KiB of UTF-8) is cut at a character
boundary before it is spooled, and the document says so: its dotted path is listed in
``vedette.truncated`` and ``tags`` gets ``vedette_truncated``. (The mapping's ``ignore_above``
already keeps every indexed term under Lucene's 32,766-byte limit; the cut bounds the document
and the spool. The JSON-lines sink keeps the full value.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent.alerts import LEVELS, Alert, nest, to_ecs
from agent.events import Event
from agent.identity import Identity

ALERTS_DATASET = "vedette.alerts"
EVENTS_DATASET = "vedette.events"
# Stream labels for metrics (bounded: these three and "other").
STREAM_ALERTS = "alerts"
STREAM_LATEST = "alerts_latest"
STREAM_EVENTS = "events"
MAX_STRING_BYTES = 8192
TRUNCATED_TAG = "vedette_truncated"


def alerts_stream(namespace: str) -> str:
    return f"logs-{ALERTS_DATASET}-{namespace}"


def events_stream(namespace: str) -> str:
    return f"logs-{EVENTS_DATASET}-{namespace}"


def latest_index(namespace: str) -> str:
    return f"vedette-alerts-latest-{namespace}"


def stream_labels(namespace: str) -> dict[str, str]:
    """Index name → metric label, for the shipper."""
    return {
        alerts_stream(namespace): STREAM_ALERTS,
        latest_index(namespace): STREAM_LATEST,
        events_stream(namespace): STREAM_EVENTS,
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def alert_severity(alert: Alert) -> int:
    """Eviction priority in the spool: the ECS ``event.severity`` (1 informational … 5 critical)."""
    return LEVELS.get(alert.rule.level, LEVELS["medium"])[0]


def _cut(value: str, limit: int) -> str:
    raw = value.encode("utf-8", "surrogatepass")
    return raw[:limit].decode("utf-8", "ignore") if len(raw) > limit else value


def _truncate(value: Any, path: str, cut: list[str], limit: int) -> Any:
    if isinstance(value, str):
        # UTF-8 is at most 4 bytes a character: shorter strings need no encoding to check.
        if len(value) * 4 <= limit:
            return value
        short = _cut(value, limit)
        if short is not value:
            cut.append(path)
        return short
    if isinstance(value, dict):
        return {k: _truncate(v, f"{path}.{k}" if path else str(k), cut, limit)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_truncate(v, path, cut, limit) for v in value]
    return value


def truncate_long_strings(doc: dict[str, Any], limit: int = MAX_STRING_BYTES) -> dict[str, Any]:
    """``doc`` with every string over ``limit`` UTF-8 bytes cut, marked in the document."""
    cut: list[str] = []
    out: dict[str, Any] = _truncate(doc, "", cut, limit)
    if cut:
        vedette = out.get("vedette")
        if not isinstance(vedette, dict):
            vedette = out["vedette"] = {}
        vedette["truncated"] = sorted(set(cut))
        tags = out.get("tags")
        out["tags"] = [*(tags if isinstance(tags, list) else []), TRUNCATED_TAG]
    return out


def document_bytes(doc: dict[str, Any], limit: int = MAX_STRING_BYTES) -> bytes:
    """``doc`` as JSON, with :func:`truncate_long_strings` applied only when it can matter: no
    string is longer in UTF-8 than the whole serialized document, so a document of at most
    ``limit`` bytes (nearly every alert) is sent as serialized, without walking it (the walk
    was a quarter of the agent's CPU per alert)."""
    raw = _dumps(doc)
    if len(raw) <= limit:
        return raw
    return _dumps(truncate_long_strings(doc, limit))


def alert_bulk_lines(
    alert: Alert, identity: Identity, namespace: str, latest: bool = True
) -> bytes:
    doc = document_bytes(to_ecs(alert, identity, namespace))
    history = _dumps(
        {"create": {"_index": alerts_stream(namespace), "_id": f"{alert.id}-{alert.revision}"}}
    )
    out = history + b"\n"
    if latest:
        action = {
            "index": {
                "_index": latest_index(namespace),
                "_id": alert.id,
                "version": alert.revision + 1,
                "version_type": "external",
            }
        }
        out += _dumps(action) + b"\n"
    return out + doc + b"\n"


def event_document(event: Event, identity: Identity, namespace: str) -> dict[str, Any]:
    raw = event.to_dict()
    logsource = raw.pop("logsource", {})
    timestamp = raw.pop("@timestamp")
    doc: dict[str, Any] = nest({k: v for k, v in raw.items() if isinstance(k, str)})
    found = doc.get("event")
    event_obj: dict[str, Any] = found if isinstance(found, dict) else {}
    doc["event"] = {"kind": "event", "module": "vedette", **event_obj, "dataset": EVENTS_DATASET}
    doc.update(
        {
            "@timestamp": timestamp,
            "data_stream": {"type": "logs", "dataset": EVENTS_DATASET, "namespace": namespace},
            "host": {"name": identity.host_name, "hostname": identity.host_name,
                     "id": identity.host_id},
            "agent": {"id": identity.agent_id, "name": identity.agent_name, "type": "vedette",
                      "version": identity.version},
            "vedette": {"logsource": logsource,
                        "dataset": event_obj.get("dataset") if event_obj else None},
        }
    )
    return doc


def event_bulk_lines(event: Event, identity: Identity, namespace: str) -> bytes:
    doc = document_bytes(event_document(event, identity, namespace))
    # The id covers the host and the event's own content: a resend is a 409, not a duplicate.
    doc_id = hashlib.sha256(identity.agent_id.encode() + b"\0" + doc).hexdigest()[:32]
    action = _dumps({"create": {"_index": events_stream(namespace), "_id": doc_id}})
    return action + b"\n" + doc + b"\n"


def split_items(body: bytes) -> list[tuple[bytes, bytes]]:
    """A spooled body — one or more action lines, then the one source line they share (stored
    once: half the spool bytes for an alert) — → its (action, source) bulk pairs."""
    lines = body.split(b"\n")
    if len(lines) < 3 or lines[-1]:
        return []  # not newline-terminated or no action: nothing sendable
    source = lines[-2]
    return [(action, source) for action in lines[:-2]]
