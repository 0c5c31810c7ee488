"""Bulk request pieces for the shipper: items, per-item classification, request failures.

===========================================  ======================================
per-item status                              outcome
===========================================  ======================================
200/201                                      delivered
409                                          already there: duplicate avoided
429, 5xx, ``cluster_block_exception``        retried
401/403 (``security_exception``: a missing   kept spooled as an auth problem, retried
index privilege)
other 4xx (mapping, parsing, bad index)      dead-letter file, never blocks the queue
===========================================  ======================================

(elasticsearch.md §3 and Beats' rules; ``cluster_block_exception`` comes as 403 or 429 and is
operationally transient: read-only or flood-stage blocks are lifted by an operator.)
"""

from __future__ import annotations

import gzip
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch

from agent.spool import SpoolRecord


class Outcome(Enum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD = "dead"


def classify_item(status: int, error_type: str) -> tuple[Outcome, str]:
    """Final or not, and the retry reason."""
    if 200 <= status < 300:
        return Outcome.DELIVERED, ""
    if status == 409:
        return Outcome.DUPLICATE, ""
    if error_type == "cluster_block_exception":
        return Outcome.RETRY, "cluster_block"
    if status in (401, 403):
        return Outcome.RETRY, "auth"  # a privilege the operator must grant: nothing is lost
    if status == 429:
        return Outcome.RETRY, "rejected"
    if status >= 500 or status == 0:
        return Outcome.RETRY, "unavailable"
    return Outcome.DEAD, ""


def request_failure_reason(exc: Exception) -> str:
    """The ``reason`` label of a failed request (``vedette_es_request_failures_total``)."""
    if isinstance(exc, ConnectionTimeout):
        return "timeout"
    if isinstance(exc, ApiError):
        status = exc.status_code
        if status in (401, 403) and exc.error != "cluster_block_exception":
            return "auth"
        if status == 413:
            return "too_large"
        if status == 429:
            return "rejected"
        if status == 400:
            return "bad_request"
        return "unavailable" if status >= 500 else "status"
    return "connection"


def describe(exc: Exception) -> str:
    """Status and error type only: never the request, its headers or its body."""
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status_code} {exc.error}"
    return type(exc).__name__


@dataclass(eq=False, slots=True)
class BulkItem:
    """One action + source pair of a spooled record; ``sent`` while a request carries it."""

    action: bytes
    source: bytes
    stream: str
    sent: bool = False


@dataclass(eq=False, slots=True)
class PendingRecord:
    """A spooled record read into memory; gone from the spool once ``items`` is empty."""

    record: SpoolRecord
    items: list[BulkItem] = field(default_factory=list)


Batch = list[tuple[PendingRecord, BulkItem]]  # what one bulk request carries
# Only what the shipper reads: every item keeps its status, so positions still match.
_NL = b"\n"
_FILTER = {"filter_path": "errors,items.*.status,items.*.error.type,items.*.error.reason"}


def stream_of(action: bytes, streams: Mapping[str, str]) -> str:
    """The metric label of an action line (we wrote it: ``"_index":"<name>"`` is in it)."""
    start = action.find(b'"_index":"')
    if start < 0:
        return "other"
    start += len(b'"_index":"')
    name = action[start:action.find(b'"', start)].decode("utf-8", "replace")
    return streams.get(name, "other")


def bulk_body(items: Batch) -> bytes:
    """The NDJSON body: one ``bytes.join`` over the pieces (no per-item concatenation)."""
    parts: list[bytes] = []
    extend = parts.extend
    for _, it in items:
        extend((it.action, _NL, it.source, _NL))
    return b"".join(parts)


def compressed(body: bytes, headers: Mapping[str, str], compress: bool
               ) -> tuple[bytes, dict[str, str]]:
    """``body`` gzipped at level 1 when ``compress`` (the transport's own ``http_compress``
    uses level 9, 3-5x the CPU for 10 % less) and its headers. Called on the sender thread:
    zlib releases the interpreter lock, so compression overlaps with the shipper's work."""
    if not compress:
        return body, dict(headers)
    return gzip.compress(body, compresslevel=1), {**headers, "content-encoding": "gzip"}


@dataclass(eq=False)
class BulkRequest:
    batch: Batch
    future: Future[Any]
    started: float


class BulkSender:
    """``workers`` daemon threads performing bulk requests, each on its own connection, so
    that Elasticsearch indexes one batch while the next one is compressed, sent and its
    predecessor's response parsed. Completion order does not matter: every write is
    idempotent (``create`` with a deterministic ``_id``, or an external version), and the
    shipper collects the results in submission order. (A ThreadPoolExecutor's workers are
    joined at interpreter exit: a hung request would delay the agent's shutdown.)"""

    def __init__(self, client: Elasticsearch, headers: Mapping[str, str], compress: bool,
                 workers: int = 1) -> None:
        self._client = client
        self._headers = dict(headers)
        self._compress = compress
        self._queue: queue.SimpleQueue[tuple[bytes, Future[Any]] | None] = queue.SimpleQueue()
        self._workers = max(1, workers)
        for n in range(self._workers):
            threading.Thread(target=self._run, name=f"es-bulk-{n}", daemon=True).start()

    def submit(self, body: bytes) -> Future[Any]:
        """Queue an uncompressed NDJSON body; the future holds the client's response."""
        future: Future[Any] = Future()
        self._queue.put((body, future))
        return future

    def close(self) -> None:
        for _ in range(self._workers):
            self._queue.put(None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            raw, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                body, headers = compressed(raw, self._headers, self._compress)
                future.set_result(self._client.perform_request(
                    "PUT", "/_bulk", headers=headers, body=body, params=_FILTER
                ))
            except BaseException as exc:  # handed to the shipper thread
                future.set_exception(exc)
