"""The detection checkpoint: what a restart needs and the log lines cannot rebuild, written
before source positions are acknowledged.

A restart after ``kill -9`` or a power loss re-reads every log line after the last
acknowledged position (:mod:`agent.pipeline`). What those lines cannot rebuild is the state
built from the lines *before* the position. The checkpoint keeps exactly that:

* every open alert of every rule (its id, revision, count, the evidence event that opened it,
  when it was last sent), so that it carries on under the same id and gets its ``closed``
  revision when it goes quiet, instead of staying open in Elasticsearch forever;
* every correlation rule's windows (:meth:`~agent.detection.correlation.GroupTable.export_groups`:
  counts towards a threshold not reached yet, distinct values, armed/fired), so that 3 failed
  logins before a crash and 2 after are the 5 of a brute force — bounded by
  :mod:`agent.detection.state_codec` (newest 1,024 entries per list of a group, 200,000 entries
  in all, most recently used groups first; the groups left out are a gauge), and restored only
  into a rule of the same content (a changed rule starts empty: ``stale_rule``);
* suppression: each rule's cooldowns and the opening times its per-minute cap counts (the
  newest 10,000 of each), so that a restart neither re-raises an alert that was being
  suppressed nor lifts a cap early.

It is written on the detection thread just before the positions are acknowledged, atomically,
with a checksum (:mod:`agent.detection.checkpoint_file`): the positions on disk are never newer
than the checkpoint. A damaged, foreign or newer-version file is refused (logged, counted in
``vedette_checkpoint_problems_total``, moved aside) and the agent runs on from empty state.

Not checkpointed: the engine's event-time watermark (the first event after the restart sets
it; restored groups expire by it then), the suppression meta-alert's recent-drops history, and
the late-window history beyond a group's lists. See docs/elasticsearch.md, "Guarantees".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.alerts import Alert, RuleRef, Status
from agent.detection import checkpoint_file
from agent.detection import state_codec as codec
from agent.detection.correlation import GroupTable
from agent.detection.lifecycle import AlertBook

if TYPE_CHECKING:
    from agent.detection.engine import Engine

log = logging.getLogger(__name__)

EVIDENCE_KEPT = 1
"""Evidence events kept per alert (the one that opened it): the evidence is most of a
checkpoint's size — 3,000 open alerts with 5 events each are 7 MB and ~1 s to write, without
all but the first ~1 MB. The alert's earlier snapshots in Elasticsearch keep the rest; after a
restart the evidence list grows again from the new events."""
_PLACEHOLDER = RuleRef(id="", title="")
_PARSE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)

Tables = Mapping[str, GroupTable[Any]]


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
    """Reads and writes the detection state of a set of :class:`AlertBook` and correlation
    group tables (both keyed by rule id). ``metrics``: an ``AgentMetrics`` (or ``None``)."""

    def __init__(self, path: Path, metrics: Any = None) -> None:
        self.path = path
        self.metrics = metrics
        self.restored_groups = 0
        """Correlation groups put back by the last :meth:`restore`."""
        self.watermark: float | None = None
        """The event-time watermark the last :meth:`restore` read (``None``: none)."""

    # ------------------------------------------------------------------ an engine

    def save_engine(self, engine: Engine) -> None:
        """:meth:`save` of everything ``engine`` keeps that a restart needs."""
        self.save(engine.books, engine.states, engine.watermark)

    def restore_engine(self, engine: Engine) -> int:
        """:meth:`restore` into ``engine`` (its event-time watermark too)."""
        restored = self.restore(engine.books, engine.states)
        if self.watermark is not None and self.watermark > engine.watermark:
            engine.watermark = self.watermark
        return restored

    # ------------------------------------------------------------------ write

    def save(self, books: Mapping[str, AlertBook], tables: Tables | None = None,
             watermark: float | None = None) -> None:
        """Write the checkpoint durably; raises ``OSError`` (the caller keeps the positions
        where they are and tries again)."""
        body: dict[str, Any] = {
            "rules": self._open_alerts(books), "suppression": self._suppression(books),
            "windows": self._windows(tables or {})}
        if watermark is not None and math.isfinite(watermark):
            body["watermark"] = watermark
        checkpoint_file.write(self.path, body)

    @staticmethod
    def _open_alerts(books: Mapping[str, AlertBook]) -> dict[str, list[dict[str, Any]]]:
        rules: dict[str, list[dict[str, Any]]] = {}
        for rule_id, book in books.items():
            entries = [{"key": _key_out(key), "alert": _alert_out(alert),
                        "last_emit": last_emit, "dirty": dirty}
                       for key, alert, last_emit, dirty in book.export_open()]
            if entries:
                rules[rule_id] = entries
        return rules

    @staticmethod
    def _suppression(books: Mapping[str, AlertBook]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rule_id, book in books.items():
            if not (book.cooldown_until or book.opened_at):
                continue
            cooldowns = []
            for key, until in list(book.cooldown_until.items())[-codec.SUPPRESSION_KEPT:]:
                try:
                    cooldowns.append([codec.encode(key), until])
                except ValueError:
                    continue
            out[rule_id] = {"cooldown": cooldowns,
                            "opened": list(book.opened_at)[-codec.SUPPRESSION_KEPT:]}
        return out

    def _windows(self, tables: Tables) -> dict[str, dict[str, Any]]:
        busy = [(rule_id, t) for rule_id, t in tables.items() if len(t)]
        share = codec.ENTRIES_TOTAL // max(1, len(busy))
        out: dict[str, dict[str, Any]] = {}
        left_out = 0
        for rule_id, table in busy:
            groups, missing = table.export_groups(share)
            left_out += missing
            if groups:
                out[rule_id] = {"hash": table.rule.content_hash, "kind": table.KIND,
                                "groups": groups}
        if self.metrics is not None:
            self.metrics.checkpoint_groups_left_out.set(left_out)
        return out

    # ------------------------------------------------------------------ read

    def restore(self, books: Mapping[str, AlertBook], tables: Tables | None = None) -> int:
        """Put the checkpointed state back into ``books`` and ``tables``; rules no longer
        loaded are skipped. Returns the open alerts restored. A missing file restores nothing;
        a refused one is logged, counted and moved aside, and nothing is restored."""
        self.restored_groups = 0
        self.watermark = None
        try:
            contents = checkpoint_file.read(self.path)
        except checkpoint_file.Refused as exc:
            self._problem(exc.reason)
            aside = checkpoint_file.move_aside(self.path)
            log.error("detection checkpoint %s refused (%s: %s); open alerts, correlation "
                      "windows and cooldowns start empty%s", self.path, exc.reason, exc.detail,
                      f"; the file is kept as {aside}" if aside else "")
            return 0
        if contents is None:
            return 0
        body = contents.body
        if contents.version == 1:
            self._problem("old_version")
            log.warning("detection checkpoint %s is version 1 (an older Vedette): its open "
                        "alerts are restored; correlation windows and cooldowns start empty",
                        self.path)
        restored, skipped = self._restore_alerts(books, body.get("rules"))
        self._restore_suppression(books, body.get("suppression"))
        groups, refused = self._restore_windows(tables or {}, body.get("windows"))
        self.restored_groups = groups
        try:
            self.watermark = codec.stamp(body["watermark"])
        except (KeyError, ValueError):
            self.watermark = None
        if restored or skipped or groups or refused:
            log.info("detection checkpoint restored",
                     extra={"open_alerts": restored, "skipped": skipped,
                            "correlation_groups": groups, "groups_refused": refused})
        return restored

    def _problem(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.checkpoint_problems.labels(reason=reason).inc()

    @staticmethod
    def _restore_alerts(books: Mapping[str, AlertBook], rules: Any) -> tuple[int, int]:
        restored = skipped = 0
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
                except _PARSE_ERRORS:
                    skipped += 1
            restored += book.restore_open(parsed)
        return restored, skipped

    @staticmethod
    def _restore_suppression(books: Mapping[str, AlertBook], raw: Any) -> None:
        for rule_id, state in (raw.items() if isinstance(raw, dict) else ()):
            book = books.get(rule_id)
            if book is None or not isinstance(state, dict):
                continue
            try:
                cooldowns = [(codec.decode(k), codec.stamp(u)) for k, u in state["cooldown"]]
                opened = [codec.stamp(ts) for ts in state["opened"]]  # in opening order
            except _PARSE_ERRORS:
                continue
            for key, until in cooldowns:
                book.cooldown_until[key] = until
            while len(book.cooldown_until) > book.options.max_groups:
                book.cooldown_until.popitem(last=False)
            book.opened_at.extend(opened)

    def _restore_windows(self, tables: Tables, raw: Any) -> tuple[int, int]:
        restored = refused = 0
        for rule_id, entry in (raw.items() if isinstance(raw, dict) else ()):
            table = tables.get(rule_id)
            if table is None or not isinstance(entry, dict):
                continue  # a rule no longer loaded
            if entry.get("hash") != table.rule.content_hash or entry.get("kind") != table.KIND:
                self._problem("stale_rule")
                log.warning("detection checkpoint: the windows of rule %s are not restored "
                            "(the rule changed since they were written)", rule_id)
                continue
            done, bad = table.import_groups(entry.get("groups"))
            restored += done
            refused += bad
        if refused:
            self._problem("damaged")
        return restored, refused
