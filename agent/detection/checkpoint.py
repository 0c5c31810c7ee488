"""The detection checkpoint: open alerts, written before source positions are acknowledged.

A restart after ``kill -9`` or a power loss re-reads every log line after the last
acknowledged position (:mod:`agent.pipeline`). What those lines cannot rebuild is the alert
state from *before* the position: an alert opened earlier and still open at the crash. The
checkpoint keeps exactly that — every open alert of every rule (its id, revision, count, the
evidence event that opened it, when it was last sent) — so after the restart the alert carries
on under the same id and gets its ``closed`` revision when it goes quiet, instead of staying
open in Elasticsearch forever. It is written on the detection thread just before the positions
are acknowledged, atomically (temporary file, fsync, rename, fsync of the directory): the
positions on disk are never newer than the checkpoint.

Not checkpointed: correlation windows (counts towards a threshold not reached yet) and
suppression state (cooldowns, the per-minute cap). A window in progress at the crash starts
empty after the restart; the lines before the acknowledged position are not read again. See
docs/elasticsearch.md, "Guarantees".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.alerts import Alert, RuleRef, Status
from agent.detection.lifecycle import AlertBook
from agent.durable import write_durably

log = logging.getLogger(__name__)

VERSION = 1
EVIDENCE_KEPT = 1
"""Evidence events kept per alert (the one that opened it): the evidence is most of a
checkpoint's size — 3,000 open alerts with 5 events each are 7 MB and ~1 s to write, without
all but the first ~1 MB. The alert's earlier snapshots in Elasticsearch keep the rest; after a
restart the evidence list grows again from the new events."""
_PLACEHOLDER = RuleRef(id="", title="")


def _key_out(key: Any) -> Any:
    if isinstance(key, tuple):
        return {"t": [_key_out(k) for k in key]}
    return key


def _key_in(raw: Any) -> Any:
    if isinstance(raw, dict) and isinstance(raw.get("t"), list):
        return tuple(_key_in(k) for k in raw["t"])
    if isinstance(raw, list):
        return tuple(_key_in(k) for k in raw)
    return raw


def _alert_out(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id, "group": alert.group, "first_seen": alert.first_seen,
        "last_seen": alert.last_seen, "count": alert.count, "status": str(alert.status),
        "revision": alert.revision, "matched": alert.matched,
        "evidence": alert.evidence[:EVIDENCE_KEPT],
        "message": alert.message, "categories": list(alert.categories),
    }


def _alert_in(raw: dict[str, Any]) -> Alert:
    return Alert(
        id=str(raw["id"]), rule=_PLACEHOLDER, group=dict(raw["group"]),
        first_seen=float(raw["first_seen"]), last_seen=float(raw["last_seen"]),
        count=int(raw["count"]), status=Status(raw["status"]), revision=int(raw["revision"]),
        matched=dict(raw["matched"]), evidence=[dict(e) for e in raw["evidence"]],
        message=str(raw["message"]), categories=tuple(str(c) for c in raw["categories"]),
    )


class AlertCheckpoint:
    """Reads and writes the open alerts of a set of :class:`AlertBook` (keyed by rule id)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, books: Mapping[str, AlertBook]) -> None:
        rules: dict[str, list[dict[str, Any]]] = {}
        for rule_id, book in books.items():
            entries = [{"key": _key_out(key), "alert": _alert_out(alert),
                        "last_emit": last_emit, "dirty": dirty}
                       for key, alert, last_emit, dirty in book.export_open()]
            if entries:
                rules[rule_id] = entries
        text = json.dumps({"version": VERSION, "rules": rules}, default=str,
                          ensure_ascii=True, separators=(",", ":"))
        write_durably(self.path, text)

    def restore(self, books: Mapping[str, AlertBook]) -> int:
        """Put the checkpointed open alerts back into ``books``; rules no longer loaded are
        skipped. A missing file restores nothing; a damaged one is logged and ignored."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.error("detection checkpoint %s unreadable (%s); open alerts not restored",
                      self.path, exc)
            return 0
        if not isinstance(data, dict) or data.get("version") != VERSION:
            log.error("detection checkpoint %s: unknown format; ignored", self.path)
            return 0
        restored = skipped = 0
        rules = data.get("rules")
        for rule_id, entries in (rules.items() if isinstance(rules, dict) else ()):
            book = books.get(rule_id)
            if book is None or not isinstance(entries, list):
                skipped += len(entries) if isinstance(entries, list) else 1
                continue
            parsed = []
            for entry in entries:
                try:
                    parsed.append((_key_in(entry["key"]), _alert_in(entry["alert"]),
                                   float(entry["last_emit"]), bool(entry["dirty"])))
                except (KeyError, TypeError, ValueError):
                    skipped += 1
            restored += book.restore_open(parsed)
        if restored or skipped:
            log.info("detection checkpoint restored",
                     extra={"open_alerts": restored, "skipped": skipped})
        return restored
