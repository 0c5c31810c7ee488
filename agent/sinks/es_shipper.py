"""The shipper thread: spool → ``_bulk`` → acknowledged records deleted from the spool.

Records are read from the spool in ``seq`` order and kept in memory until every bulk item of
the record reached a final outcome (:mod:`agent.sinks.es_bulk`: delivered, duplicate or
dead-lettered); only then is the record deleted from the spool, so a crash at any point
resends it and the deterministic ``_id`` turns the resend into a 409.

Up to two requests are in flight, each on its own sender thread and connection (which gzip
the body, off the interpreter lock, and parse the response): while Elasticsearch indexes one
batch, the next is compressed and sent and the shipper acknowledges the previous one. A second
request only goes out when a full batch is waiting; under light load batches linger up to
``batch_max_age_seconds`` and go out one at a time. Results are handled in submission order;
completion order does not matter because every write is idempotent. A response with
``errors: false`` (every item 2xx) is acknowledged without reading its items one by one.

Retried items wait behind their stream's gate (:mod:`agent.sinks.es_flow`): the initial
delay when part of the stream was accepted, exponential backoff with jitter when all of it was
refused — while the other streams go on shipping (a per-item 503 on the latest index does not
hold up the history). A per-item 401/403 (``security_exception``: a missing index privilege)
is an auth problem, not a bad document: kept spooled, retried behind its gate, counted and
reported to ``on_auth_failure`` like a refused request. Records whose remaining items all wait
behind closed gates are dropped from memory past a bound (they stay spooled) and read again
once a closed stream was accepted again and every gate is open, so memory stays bounded and
the open streams keep their room.

Whole-request failures (connection refused, timeout, TLS, 401/403, 429, 5xx, malformed
response) keep the batch and back off exponentially with jitter; 401/403 are also logged
loudly, counted and reported to ``on_auth_failure``. A timeout also halves the batch size
(grown back as requests are answered). 413 splits the batch in halves; a single document too
large for the cluster is dead-lettered. The index setup runs before the first bulk request and
again after every reconnection; a setup that failed (a 503, any object not installed) is not
marked done: on a transient failure nothing is shipped until it succeeds (shipping into a data
stream created without Vedette's templates would fix the wrong mapping until rollover), on a
permanent one shipping goes on and the setup is retried every ``SETUP_RETRY_SECONDS``.

(Over 400 lines on purpose: the loop, the per-item accounting and the failure handling all
work on the same in-memory state — pending records, in-flight requests, gates — which a split
would have to expose between modules; the pieces without that state live in ``es_bulk`` and
``es_flow``.)
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, TransportError

from agent.metrics import AgentMetrics
from agent.sinks.es_bulk import (
    Batch,
    BulkItem,
    BulkRequest,
    BulkSender,
    Outcome,
    PendingRecord,
    bulk_body,
    classify_item,
    describe,
    request_failure_reason,
    stream_of,
)
from agent.sinks.es_deadletter import DeadLetterFile
from agent.sinks.es_docs import split_items
from agent.sinks.es_flow import BatchSizer, StreamGates
from agent.sinks.es_templates import install
from agent.spool import Spool

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 2
SETUP_RETRY_SECONDS = 300.0
PARKED_BATCHES = 8  # records waiting only on closed gates kept in memory: this many batches


@dataclass
class ShipperSettings:
    batch_max_docs: int = 1000
    batch_max_bytes: int = 5 * 1024 * 1024
    batch_max_age_seconds: float = 0.2
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    setup_templates: bool = True
    ilm_delete_after_days: int = 90
    maintenance_interval_seconds: float = 1.0
    sync_interval_seconds: float = 1.0
    compress: bool = True


@dataclass
class ShipperCounts:
    """Totals since start (metrics carry the same numbers; ship_alerts reports these)."""

    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried_items: int = 0
    request_failures: dict[str, int] = field(default_factory=dict)


class Shipper:
    def __init__(
        self,
        spool: Spool,
        client: Elasticsearch,
        bulk_headers: Mapping[str, str],
        json_headers: Mapping[str, str],
        metrics: AgentMetrics,
        dead_letter: DeadLetterFile,
        streams: Mapping[str, str],
        settings: ShipperSettings,
        on_auth_failure: Callable[[str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.client = client
        self._json_headers = dict(json_headers)
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.streams = dict(streams)
        self.settings = settings
        self.on_auth_failure = on_auth_failure
        self.on_tick = on_tick
        self.clock = clock
        self.counts = ShipperCounts()
        self._pending: dict[int, PendingRecord] = {}
        self._inflight: deque[BulkRequest] = deque()
        self._sender = BulkSender(client, bulk_headers, settings.compress, PIPELINE_DEPTH)
        self._removals = -1  # spool.removals when _pending was last checked against it
        self._last_seq = 0
        self._failures = 0
        self._needs_setup = settings.setup_templates
        self._setup_retry_at = 0.0  # monotonic; a permanent setup failure waits this long
        self._gates = StreamGates(settings.backoff_initial_seconds, settings.backoff_max_seconds,
                                  random.Random())
        self._sizer = BatchSizer(settings.batch_max_docs, settings.batch_max_bytes)
        metrics.es_batch_docs.set(self._sizer.docs)
        self._rescan_after: int | None = None  # re-read the spool from here once gates open
        self._rescan_mark = 0  # gates' recoveries when records were last dropped from memory
        self._setup_warned = False
        self._auth_logged_at = 0.0
        self._last_maintenance = 0.0
        self._last_sync = clock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="es-shipper", daemon=True)
        self._rng = random.Random()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the loop to end; True if it did within ``timeout`` (else it is abandoned:
        it is a daemon thread and whatever it did not acknowledge stays spooled)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sender.close()
        return not self._thread.is_alive()

    def in_flight(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except (sqlite3.ProgrammingError, sqlite3.OperationalError) as exc:
                if self._stop.is_set():
                    return  # the spool was closed under us at shutdown
                log.error("spool error in the Elasticsearch shipper: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("Elasticsearch shipper error; continuing")
                self._stop.wait(1.0)

    # ------------------------------------------------------------------ loop

    def _step(self) -> None:
        now = self.clock()
        if now - self._last_maintenance >= self.settings.maintenance_interval_seconds:
            self._maintain(now)
        closed = self._gates.closed()
        self._fill(closed)
        ready = [(p, i) for p in self._pending.values() for i in p.items
                 if not i.sent and i.stream not in closed]
        if not ready and not self._inflight:
            wait = self.settings.maintenance_interval_seconds
            reopen = self._gates.next_open()
            self._wake.wait(wait if reopen is None else min(wait, reopen))
            self._wake.clear()
            return
        if ready and not self._inflight:
            linger = self._linger(now, ready)
            if linger > 0:
                self._wake.wait(min(linger, self.settings.maintenance_interval_seconds))
                self._wake.clear()
                return
            if (self._needs_setup and time.monotonic() >= self._setup_retry_at
                    and not self._setup()):
                self._backoff()
                return
            self._submit(ready)
            return
        if ready and len(self._inflight) < PIPELINE_DEPTH and self._full(ready):
            self._submit(ready)  # pipelined: Elasticsearch works on the other one meanwhile
            return
        self._collect(self._inflight.popleft())

    def _full(self, ready: Batch) -> bool:
        if len(ready) >= self._sizer.docs:
            return True
        size, limit = 0, self._sizer.bytes
        for _, item in ready:
            size += len(item.action) + len(item.source)
            if size >= limit:
                return True
        return False

    def _linger(self, now: float, ready: Batch) -> float:
        """Seconds to wait for more records before sending (0 = send now)."""
        if self._failures or self._full(ready):
            return 0.0
        oldest = min(p.record.created for p, _ in ready)
        return max(0.0, oldest + self.settings.batch_max_age_seconds - now)

    def _fill(self, closed: set[str]) -> None:
        """Keep up to PIPELINE_DEPTH batches' worth of sendable records in memory (records
        waiting only on closed gates do not count, up to PARKED_BATCHES batches of them)."""
        pending = self._pending
        if (self._rescan_after is not None and not closed
                and self._gates.recoveries > self._rescan_mark):
            # The streams recovered: read the parked records dropped from memory again.
            self._last_seq = min(self._last_seq, self._rescan_after)
            self._rescan_after = None
        docs = size = 0
        parked: list[int] = []
        if not closed:  # the usual case: every pending item counts
            docs = sum(len(p.items) for p in pending.values())
            size = sum(len(p.record.body) for p in pending.values())
        for seq, p in pending.items() if closed else ():
            active = sum(1 for i in p.items if i.stream not in closed)
            if active or any(i.sent for i in p.items):
                docs += active
                size += len(p.record.body)
            else:
                parked.append(seq)
        over = len(parked) - PARKED_BATCHES * self.settings.batch_max_docs
        if over > 0:
            parked.sort()
            for seq in parked[-over:]:  # the newest: they are read again first
                del pending[seq]
            first = parked[-over] - 1
            self._rescan_after = first if self._rescan_after is None else min(
                self._rescan_after, first)
            self._rescan_mark = self._gates.recoveries
        room_docs = PIPELINE_DEPTH * self.settings.batch_max_docs - docs
        room_bytes = PIPELINE_DEPTH * self.settings.batch_max_bytes - size
        if room_docs <= 0 or room_bytes <= 0:
            return
        streams = self.streams
        for record in self.spool.read(self._last_seq, room_docs, room_bytes):
            self._last_seq = record.seq
            if record.seq in pending:
                continue  # read again after parked records were dropped from memory
            items = [BulkItem(a, src, stream_of(a, streams)) for a, src in split_items(record.body)]
            if items:
                pending[record.seq] = PendingRecord(record, items)
            else:
                self.spool.ack([record.seq])

    def _forget_dropped(self) -> bool:
        """Records evicted (overflow), superseded or expired while waiting in memory are not
        sent: what the metrics count as dropped must really be dropped. True if any was."""
        removals = self.spool.removals
        if removals == self._removals:
            return False  # nothing evicted, superseded or expired since the last check
        self._removals = removals
        idle = [s for s, p in self._pending.items() if not any(i.sent for i in p.items)]
        present = self.spool.present(idle)
        gone = [seq for seq in idle if seq not in present]
        for seq in gone:
            del self._pending[seq]
        return bool(gone)

    def _maintain(self, now: float) -> None:
        self._last_maintenance = now
        expired = self.spool.expire()
        if expired:
            self.metrics.es_spool_dropped.labels("age").inc(len(expired))
            log.warning("dropped %d spooled documents older than %.0f s", len(expired),
                        self.spool.max_age_seconds)
        if self.spool.corrupt:
            self.metrics.es_spool_dropped.labels("corrupt").inc(self.spool.corrupt)
            self.spool.corrupt = 0
        if now - self._last_sync >= self.settings.sync_interval_seconds:
            self._last_sync = now
            self.spool.sync()
        if self.on_tick is not None:
            self.on_tick()

    def _backoff(self) -> None:
        self._failures += 1
        base = self.settings.backoff_initial_seconds * 2 ** min(self._failures - 1, 30)
        delay = min(self.settings.backoff_max_seconds, base) * self._rng.uniform(0.5, 1.0)
        self._stop.wait(delay)

    # ------------------------------------------------------------------ setup

    def _setup(self) -> bool:
        try:
            report = install(self.client, self._json_headers, self.settings.ilm_delete_after_days)
        except (TransportError, ApiError) as exc:
            self._request_failed(exc)
            return False
        self.metrics.es_reachable.set(1)
        if report.forbidden or report.ok:
            self._needs_setup = False
        if report.forbidden:
            self.metrics.es_setup.labels("forbidden").inc()
            if not self._setup_warned:
                log.warning("no privilege to install the Elasticsearch ILM policy and templates;"
                            " shipping anyway (run `vedette es setup` with an admin key)")
                self._setup_warned = True
        elif report.ok:
            self.metrics.es_setup.labels("ok").inc()
            changed = [line for line in report.lines() if not line.startswith("unchanged")]
            if changed:
                log.info("Elasticsearch index setup: %s", "; ".join(changed))
        else:
            self.metrics.es_setup.labels("error").inc()
            if self._failures == 0:
                log.warning("Elasticsearch index setup incomplete (%s): %s",
                            "retrying before shipping" if report.transient else
                            f"shipping anyway, retried in {SETUP_RETRY_SECONDS:.0f} s",
                            "; ".join(report.lines()))
            if report.transient:
                self._count_failure("unavailable")
                return False  # busy cluster: nothing ships into streams without our templates
            self._setup_retry_at = time.monotonic() + SETUP_RETRY_SECONDS
        return True

    # ------------------------------------------------------------------ sending

    def _submit(self, ready: Batch) -> None:
        if self._forget_dropped():
            ready = [(p, i) for p, i in ready if p.record.seq in self._pending]
        batch: Batch = []
        size, max_docs, max_bytes = 0, self._sizer.docs, self._sizer.bytes
        for pair in ready:
            size += len(pair[1].action) + len(pair[1].source)
            if batch and (len(batch) >= max_docs or size > max_bytes):
                break
            batch.append(pair)
        if not batch:
            return
        for _, item in batch:
            item.sent = True
        future = self._sender.submit(bulk_body(batch))
        self._inflight.append(BulkRequest(batch, future, time.perf_counter()))

    def _send_now(self, batch: Batch) -> None:
        """Send and handle one batch synchronously (used to split on 413)."""
        for _, item in batch:
            item.sent = True
        self._collect(BulkRequest(batch, self._sender.submit(bulk_body(batch)),
                                  time.perf_counter()))

    def _collect(self, request: BulkRequest) -> None:
        batch = request.batch
        try:
            response = request.future.result()
        except ApiError as exc:
            self._unsend(batch)
            if exc.status_code == 413:
                self._too_large(batch)
                return
            self._request_failed(exc)
            self._backoff()
            return
        except TransportError as exc:
            self._unsend(batch)
            if isinstance(exc, ConnectionTimeout):
                before = self._sizer.docs
                self.metrics.es_batch_docs.set(self._sizer.timed_out(len(batch)))
                if self._sizer.docs < before:
                    log.warning("Elasticsearch bulk request of %d documents timed out; batches "
                                "of %d from now on (grown back as requests succeed)",
                                len(batch), self._sizer.docs)
            self._request_failed(exc)
            self._backoff()
            return
        self.metrics.es_batch_docs.set(self._sizer.answered())
        self.metrics.es_bulk_seconds.observe(time.perf_counter() - request.started)
        self.metrics.es_reachable.set(1)
        results = response.body.get("items") if isinstance(response.body, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            self._unsend(batch)
            self._count_failure("bad_response")
            log.error("Elasticsearch bulk response does not match the request (%s items for %d)",
                      len(results) if isinstance(results, list) else "no", len(batch))
            self._backoff()
            return
        self.metrics.es_last_success.set(self.clock())
        if response.body.get("errors") is False:
            self._apply_delivered(batch)
        else:
            self._apply(batch, results)  # refused items wait behind their stream's gate
        self._unsend(batch)
        self._failures = 0

    @staticmethod
    def _unsend(batch: Batch) -> None:
        for _, item in batch:
            item.sent = False

    def _apply(self, items: Batch, results: list[Any]) -> int:
        retried = 0
        refused_streams: set[str] = set()
        final_streams: set[str] = set()
        auth: str | None = None
        done: set[int] = set()
        shipped: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for (pending, item), result in zip(items, results, strict=True):
            res: Any = next(iter(result.values()), {}) if isinstance(result, dict) else {}
            status = int(res.get("status", 0)) if isinstance(res, dict) else 0
            error = res.get("error") if isinstance(res, dict) else None
            etype = str(error.get("type", "")) if isinstance(error, dict) else ""
            outcome, reason = classify_item(status, etype)
            if outcome is Outcome.RETRY:
                retried += 1
                reasons[reason] = reasons.get(reason, 0) + 1
                refused_streams.add(item.stream)
                if reason == "auth":
                    auth = f"HTTP {status} {etype} on the {item.stream} stream"
                continue
            final_streams.add(item.stream)
            if outcome is Outcome.DELIVERED:
                shipped[item.stream] = shipped.get(item.stream, 0) + 1
            elif outcome is Outcome.DUPLICATE:
                duplicates[item.stream] = duplicates.get(item.stream, 0) + 1
            else:
                self._dead(item, status, error)
            pending.items.remove(item)
            done.add(pending.record.seq)
        self._ack(done)
        # Metrics once per label and response, not once per document.
        self._count_delivered(shipped)
        for stream, n in duplicates.items():
            self.counts.duplicates += n
            self.metrics.es_duplicates_avoided.labels(stream).inc(n)
        for reason, n in reasons.items():
            self.counts.retried_items += n
            self.metrics.es_retries.labels(reason).inc(n)
        for stream in refused_streams:
            self._gates.refused(stream, partly_accepted=stream in final_streams)
        self._gates.accepted(final_streams - refused_streams)
        if auth is not None:
            self._auth_refused(auth)
        return retried

    def _apply_delivered(self, items: Batch) -> int:
        """``errors: false``: every item got a 2xx (a 409 or any failure sets ``errors``), so
        the per-item results need no reading; the item count was checked by the caller."""
        done: set[int] = set()
        shipped: dict[str, int] = {}
        for pending, item in items:
            shipped[item.stream] = shipped.get(item.stream, 0) + 1
            pending.items.remove(item)
            done.add(pending.record.seq)
        self._ack(done)
        self._count_delivered(shipped)
        self._gates.accepted(shipped)
        return 0

    def _count_delivered(self, shipped: dict[str, int]) -> None:
        for stream, n in shipped.items():
            self.counts.delivered += n
            self.metrics.es_docs_shipped.labels(stream).inc(n)

    def _dead(self, item: BulkItem, status: int, error: Any) -> None:
        self.counts.dead_lettered += 1
        self.metrics.es_dead_lettered.labels(item.stream).inc()
        self.dead_letter.write(item.action, item.source, status, error)
        log.warning("Elasticsearch refused a document for good (%s %s); written to %s", status,
                    error.get("type") if isinstance(error, dict) else error, self.dead_letter.path)

    def _ack(self, seqs: set[int]) -> None:
        finished = [s for s in seqs if s in self._pending and not self._pending[s].items]
        for seq in finished:
            del self._pending[seq]
        if finished:
            self.spool.ack(finished)

    def _too_large(self, batch: Batch) -> None:
        self._count_failure("too_large")
        if len(batch) == 1:
            pending, item = batch[0]
            self._dead(item, 413, {"type": "request_entity_too_large",
                                   "reason": "a single document exceeds http.max_content_length"})
            pending.items.remove(item)
            self._ack({pending.record.seq})
            return
        half = len(batch) // 2
        self._send_now(batch[:half])
        if not self._stop.is_set():
            remaining = [(p, i) for p, i in batch[half:] if i in p.items]
            if remaining:
                self._send_now(remaining)

    def _count_failure(self, reason: str) -> None:
        self.counts.request_failures[reason] = self.counts.request_failures.get(reason, 0) + 1
        self.metrics.es_request_failures.labels(reason).inc()

    def _auth_refused(self, detail: str) -> None:
        """A 401/403 (a whole request, or items of a stream): counted, logged loudly every five
        minutes and reported to ``on_auth_failure`` (the internal alert)."""
        self.metrics.es_auth_failures.inc()
        now = self.clock()
        if now - self._auth_logged_at >= 300:
            self._auth_logged_at = now
            log.error("ELASTICSEARCH REFUSED OUR CREDENTIALS (%s): alerts stay spooled until"
                      " the API key/password or the role's privileges are fixed", detail)
            if self.on_auth_failure is not None:
                self.on_auth_failure(detail)

    def _request_failed(self, exc: Exception) -> None:
        reason = request_failure_reason(exc)
        self._count_failure(reason)
        http_answer = isinstance(exc, ApiError)
        self.metrics.es_reachable.set(1 if http_answer else 0)
        if not http_answer and not isinstance(exc, ConnectionTimeout):
            self._needs_setup = self.settings.setup_templates  # reinstall after reconnecting
        if reason == "auth":
            self._auth_refused(describe(exc))
        elif self._failures == 0:
            log.warning("Elasticsearch request failed (%s: %s); retrying with backoff", reason,
                        describe(exc))
        else:
            log.debug("Elasticsearch request failed again (%s)", reason)

