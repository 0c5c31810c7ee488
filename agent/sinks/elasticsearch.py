"""Elasticsearch sink: durable spool first, then a shipper thread (see docs/elasticsearch.md).

``emit`` renders the alert snapshot as ready-to-send bulk lines (:mod:`es_docs`) and appends
them to the SQLite spool; it returns once the record is committed (per ``spool_fsync``), which
is when the alert counts as emitted. The shipper thread (:mod:`es_shipper`) does the network.
``close`` stops the shipper within a couple of seconds; whatever Elasticsearch did not
acknowledge stays in the spool and is shipped after the next start.

Internal alerts (``on_alert``): spool overflow (documents dropped) and refused credentials
raise an alert of rule ``vedette-internal-es-spool-overflow`` / ``vedette-internal-es-auth``
(one per hour window, updated at most once a minute), from the shipper thread — never from
inside ``emit``. Their id is drawn from the rule, the host, the moment of the first occurrence
and a random value of this sink instance: unique across restarts (a restart within the hour
must not reuse an id whose documents Elasticsearch already has, or the new alert would vanish
as 409s), and fixed for the alert's lifetime, so every retry of a spooled snapshot carries the
same ``_id`` and stays idempotent.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import Elasticsearch
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.alerts import Alert, RuleRef, Status, alert_id
from agent.config import Config, ElasticsearchSection
from agent.errors import SinkError
from agent.events import Event
from agent.identity import Identity
from agent.metrics import AgentMetrics
from agent.sinks.es_client import build_client, bulk_headers, json_headers
from agent.sinks.es_deadletter import DeadLetterFile
from agent.sinks.es_docs import alert_bulk_lines, alert_severity, event_bulk_lines, stream_labels
from agent.sinks.es_shipper import Shipper, ShipperCounts, ShipperSettings
from agent.spool import AppendResult, Spool
from agent.spool.salvage import SalvageReport

log = logging.getLogger(__name__)

OVERFLOW_RULE = RuleRef(
    id="vedette-internal-es-spool-overflow",
    title="Elasticsearch spool full: documents dropped",
    level="high",
    description="The Elasticsearch spool reached its size limit and dropped documents "
    "(lowest severity, oldest first). Elasticsearch has been unreachable for long or too slow.",
    ruleset="vedette-internal",
)
AUTH_RULE = RuleRef(
    id="vedette-internal-es-auth",
    title="Elasticsearch refuses the agent's credentials",
    level="high",
    description="Elasticsearch answered 401/403 to the agent's bulk requests; alerts are kept "
    "in the spool until the API key or password is fixed.",
    ruleset="vedette-internal",
)
CORRUPT_RULE = RuleRef(
    id="vedette-internal-es-spool-corrupt",
    title="Elasticsearch spool damaged: records salvaged",
    level="high",
    description="The Elasticsearch spool file was damaged (disk or file system fault). Every "
    "readable record was carried over into a new spool; the damaged file is kept beside it.",
    ruleset="vedette-internal",
)
_INTERNAL_WINDOW = 3600.0
_INTERNAL_MIN_INTERVAL = 60.0
CLOSE_TIMEOUT = 2.0


def spool_dir(config: Config) -> Path:
    section = config.elasticsearch
    return section.spool_dir or config.agent.resolved_state_dir() / "es-spool"


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(
        self,
        section: ElasticsearchSection,
        identity: Identity,
        metrics: AgentMetrics,
        directory: Path,
        on_alert: Callable[[Alert], None] | None = None,
        client: Elasticsearch | None = None,
        spool_name: str = "spool.db",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self.identity = identity
        self.metrics = metrics
        self.namespace = section.namespace
        self.on_alert = on_alert
        self._clock = clock
        self._client = client or build_client(section)  # ConfigErrors: unreadable secret
        try:
            self.spool = Spool(
                directory / spool_name, section.spool_max_bytes, section.spool_max_age_seconds,
                section.spool_fsync, by_severity=section.spool_overflow == "drop_lowest_severity",
                clock=clock, min_free_bytes=section.spool_min_free_bytes,
            )
        except (OSError, sqlite3.Error) as exc:
            self._client.close()
            raise SinkError(f"cannot open the Elasticsearch spool in {directory}: {exc}") from None
        self.dead_letter = DeadLetterFile(directory / "dead-letter.jsonl",
                                          section.dead_letter_max_bytes)
        self._events_rng = random.Random()
        self._lock = threading.Lock()
        self._internal: dict[str, _InternalAlert] = {}
        self._instance = uuid.uuid4().hex  # makes internal alert ids unique across restarts
        self._overflow_pending = 0
        self._auth_pending: str | None = None
        self._salvage_pending: list[SalvageReport] = []
        self._note_salvage()
        self.shipper = Shipper(
            self.spool, self._client, bulk_headers(section), json_headers(section), metrics,
            self.dead_letter, stream_labels(self.namespace), _settings(section),
            on_auth_failure=self._auth_failed, on_tick=self._raise_internal, clock=clock,
        )
        _SpoolCollector.attach(metrics.registry, self.spool, spool_name.removesuffix(".db"))
        self._closed = False
        self.shipper.start()

    # ------------------------------------------------------------------ Sink protocol

    def emit(self, alert: Alert) -> None:
        body = alert_bulk_lines(alert, self.identity, self.namespace, self.section.latest_index)
        self._account(self.spool.append("alert", alert_severity(alert), body, key=alert.id))
        self.shipper.wake()

    @property
    def wants_events(self) -> bool:
        return self.section.ship_events

    def emit_event(self, event: Event) -> bool:
        """Spool one raw event if ``ship_events`` and the sampling/dataset filter keep it."""
        section = self.section
        if not section.ship_events:
            return False
        if section.events_datasets:
            dataset = event.fields.get("event.dataset")
            if dataset not in section.events_datasets:
                return False
        rate = section.events_sample_rate
        if rate < 1 and self._events_rng.random() >= rate:
            return False
        body = event_bulk_lines(event, self.identity, self.namespace)
        self._account(self.spool.append("event", 0, body))
        self.shipper.wake()
        return True

    def flush(self) -> None:
        if self.section.spool_fsync != "never":
            self.spool.sync()
        self.shipper.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.shipper.stop(CLOSE_TIMEOUT):
            log.warning("Elasticsearch shipper still busy at shutdown; unacknowledged documents "
                        "stay spooled for the next start")
        _SpoolCollector.detach(self.metrics.registry, self.spool)
        self.spool.close()
        self._client.close()

    # ------------------------------------------------------------------ helpers

    def idle(self) -> bool:
        """Nothing left to ship (spool empty and nothing in flight)."""
        return len(self.spool) == 0 and self.shipper.in_flight() == 0

    @property
    def counts(self) -> ShipperCounts:
        return self.shipper.counts

    def _account(self, result: AppendResult) -> None:
        if result.superseded:
            self.metrics.es_spool_superseded.inc(result.superseded)
        dropped = len(result.evicted) + (1 if result.refused else 0)
        if dropped:
            if result.disk_full:  # the file system could not take it (not the spool's limit)
                self.metrics.es_spool_dropped.labels("disk_full").inc()
                dropped -= 1
            if dropped:
                self.metrics.es_spool_dropped.labels("overflow").inc(dropped)
            dropped += 1 if result.disk_full else 0
            with self._lock:
                self._overflow_pending += dropped

    def _auth_failed(self, detail: str) -> None:
        with self._lock:
            self._auth_pending = detail

    def _note_salvage(self) -> None:
        """Count what the spool salvaged from a damaged file; the alert follows on a tick."""
        reports = self.spool.take_salvage_reports()
        for report in reports:
            self.metrics.es_spool_recovered.inc(report.recovered)
        with self._lock:
            self._salvage_pending += reports

    def _raise_internal(self) -> None:
        """Called by the shipper thread about once a second."""
        self._note_salvage()
        if self.on_alert is not None:  # set by the router just after construction
            with self._lock:
                salvaged, self._salvage_pending = self._salvage_pending, []
            for report in salvaged:
                self._internal_alert(
                    CORRUPT_RULE, max(1, report.lost),
                    f"Elasticsearch spool damaged: {report.recovered} records salvaged, "
                    f"{report.lost} lost{'' if report.exact else ' (estimated)'}; the damaged "
                    f"file is kept as {report.aside.name}")
        with self._lock:
            overflow, self._overflow_pending = self._overflow_pending, 0
            auth, self._auth_pending = self._auth_pending, None
        if overflow:
            log.error("Elasticsearch spool full: dropped %d documents (policy %s)", overflow,
                      self.section.spool_overflow)
            self._internal_alert(OVERFLOW_RULE, overflow,
                                 f"Elasticsearch spool full: {overflow} documents dropped")
        if auth:
            self._internal_alert(AUTH_RULE, 1, f"Elasticsearch refuses the credentials: {auth}")

    def _internal_alert(self, rule: RuleRef, count: int, message: str) -> None:
        if self.on_alert is None:
            return
        now = self._clock()
        window = now - now % _INTERNAL_WINDOW
        state = self._internal.get(rule.id)
        if state is None or state.window != window:
            group = {"host.name": self.identity.host_name}
            ident = alert_id(f"{rule.id}/{self._instance}", group, now)
            state = _InternalAlert(window, Alert(ident, rule, group, now, now, count=0,
                                                 message=message))
            self._internal[rule.id] = state
        state.alert.count += count
        state.alert.last_seen = now
        state.alert.message = message
        if now - state.sent_at < _INTERNAL_MIN_INTERVAL:
            return
        if state.sent_at:
            state.alert.revision += 1
            state.alert.status = Status.UPDATED
        state.sent_at = now
        try:
            self.on_alert(state.alert.snapshot())
        except Exception:
            log.exception("raising the internal alert %s failed", rule.id)


@dataclass
class _InternalAlert:
    window: float
    alert: Alert
    sent_at: float = 0.0


def _settings(section: ElasticsearchSection) -> ShipperSettings:
    return ShipperSettings(
        batch_max_docs=section.batch_max_docs,
        batch_max_bytes=section.batch_max_bytes,
        batch_max_age_seconds=section.batch_max_age_seconds,
        backoff_initial_seconds=section.retry_backoff_initial_seconds,
        backoff_max_seconds=section.retry_backoff_max_seconds,
        setup_templates=section.setup_templates,
        ilm_delete_after_days=section.ilm_delete_after_days,
        compress=section.gzip_bodies(),
    )


class _SpoolCollector:
    """Spool depth, bytes and oldest age, read at scrape time (names in metrics.SCRAPE_TIME).

    One collector per registry; it reports every open spool (label ``spool``: spool, replay),
    so that a sink rebuilt on config reload does not register the same names twice."""

    _by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _SpoolCollector] = (
        weakref.WeakKeyDictionary()
    )
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.spools: dict[int, tuple[str, Spool]] = {}

    @classmethod
    def attach(cls, registry: CollectorRegistry, spool: Spool, label: str) -> None:
        with cls._guard:
            collector = cls._by_registry.get(registry)
            if collector is None:
                collector = cls()
                registry.register(collector)
                cls._by_registry[registry] = collector
            collector.spools[id(spool)] = (label, spool)

    @classmethod
    def detach(cls, registry: CollectorRegistry, spool: Spool) -> None:
        with cls._guard:
            collector = cls._by_registry.get(registry)
            if collector is not None:
                collector.spools.pop(id(spool), None)

    def describe(self) -> Iterable[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        values: dict[str, list[tuple[str, float]]] = {}
        for label, spool in list(self.spools.values()):
            try:
                stats = spool.stats()
            except sqlite3.ProgrammingError:  # a spool closed between listing and reading
                continue
            except sqlite3.Error as exc:  # a damaged spool must not break the whole scrape
                log.warning("spool statistics unreadable: %s", exc)
                continue
            oldest = 0.0 if stats.oldest_created is None else max(0.0, now - stats.oldest_created)
            for name, value in (("records", stats.records), ("bytes", stats.payload_bytes),
                                ("disk_bytes", stats.disk_bytes),
                                ("limit_bytes", spool.max_bytes), ("oldest_age_seconds", oldest)):
                values.setdefault(name, []).append((label, float(value)))
        yield from self._families(values)

    @staticmethod
    def _families(values: dict[str, list[tuple[str, float]]]) -> Iterator[Metric]:
        helps = {
            "records": "Documents waiting in the Elasticsearch spool.",
            "bytes": "Payload bytes waiting in the Elasticsearch spool.",
            "disk_bytes": "Disk used by the Elasticsearch spool files (database, WAL).",
            "limit_bytes": "Configured size limit of the Elasticsearch spool.",
            "oldest_age_seconds": "Age of the oldest document in the Elasticsearch spool "
            "(0 when empty).",
        }
        for name, text in helps.items():
            family = GaugeMetricFamily(f"vedette_es_spool_{name}", text, labels=["spool"])
            for label, value in values.get(name, []):
                family.add_metric([label], value)
            yield family


# ---------------------------------------------------------------------------- factory and backfill


def build_elasticsearch_sink(
    config: Config, identity: Identity, metrics: AgentMetrics,
    on_alert: Callable[[Alert], None] | None = None,
) -> ElasticsearchSink | None:
    """The sink for ``config`` (``None`` when no hosts are configured)."""
    if not config.elasticsearch.hosts:
        return None
    return ElasticsearchSink(config.elasticsearch, identity, metrics, spool_dir(config),
                             on_alert=on_alert)


@dataclass
class ShipReport:
    emitted: int
    delivered: int
    duplicates: int
    dead_lettered: int
    dropped: int
    still_spooled: int
    elapsed_seconds: float
    request_failures: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.still_spooled == 0 and self.dropped == 0

    @property
    def undelivered(self) -> int:
        """Alerts not delivered: dropped by the spool (full, or a full disk) or still spooled
        (``delivered``/``duplicates``/``dead_lettered`` count bulk items, two per alert)."""
        return self.dropped + self.still_spooled


def ship_alerts(
    config: Config, identity: Identity, metrics: AgentMetrics, alerts: Iterable[Alert],
    timeout: float, client: Elasticsearch | None = None,
) -> ShipReport:
    """Backfill (``vedette replay FILE --ship``): spool ``alerts`` in a separate spool file
    (``replay.db``, beside the daemon's), ship them, return once all are acknowledged or
    ``timeout`` seconds passed. What is left stays in ``replay.db`` and is shipped by the next
    backfill. Raises ``ConfigErrors`` for unreadable secrets, ``ValueError`` without hosts."""
    if not config.elasticsearch.hosts:
        raise ValueError("elasticsearch.hosts is empty: nowhere to ship")
    started = time.monotonic()
    sink = ElasticsearchSink(config.elasticsearch, identity, metrics, spool_dir(config),
                             client=client, spool_name="replay.db")
    emitted = 0
    dropped_before = _dropped(metrics)
    try:
        for alert in alerts:
            sink.emit(alert)
            emitted += 1
        sink.flush()
        while not sink.idle() and time.monotonic() - started < timeout:
            time.sleep(0.05)
    finally:
        still = len(sink.spool)
        counts = sink.counts
        sink.close()
    return ShipReport(emitted, counts.delivered, counts.duplicates, counts.dead_lettered,
                      int(_dropped(metrics) - dropped_before), still,
                      time.monotonic() - started, dict(counts.request_failures))


def _dropped(metrics: AgentMetrics) -> float:
    return sum(metrics.registry.get_sample_value(
        "vedette_es_spool_dropped_total", {"reason": reason}) or 0.0
        for reason in ("overflow", "disk_full"))
