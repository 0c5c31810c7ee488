"""The shipping hot path: bulk bodies, concurrent senders, the spool's removal counter, and
the fake server's ``filter_path``."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path
from typing import Any

from agent.sinks.es_bulk import BulkItem, BulkSender, PendingRecord, bulk_body
from agent.spool import Spool, SpoolRecord
from tests.es_server.filtering import filter_path


def _batch(*pairs: tuple[bytes, bytes]) -> list[tuple[PendingRecord, BulkItem]]:
    record = PendingRecord(SpoolRecord(1, "alert", "", 3, 0.0, b""))
    return [(record, BulkItem(action, source, "alerts")) for action, source in pairs]


def test_bulk_body_is_ndjson_of_every_pair() -> None:
    body = bulk_body(_batch((b'{"create":{}}', b'{"a":1}'), (b'{"index":{}}', b'{"a":1}')))
    assert body == b'{"create":{}}\n{"a":1}\n{"index":{}}\n{"a":1}\n'


class _BlockingClient:
    """Records concurrent ``perform_request`` calls; each waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.bodies: list[tuple[bytes, dict[str, str]]] = []

    def perform_request(self, method: str, path: str, *, headers: dict[str, str],
                        body: bytes, params: dict[str, str]) -> str:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.bodies.append((body, headers))
        self.release.wait(5)
        with self.lock:
            self.active -= 1
        return f"{method} {path}"


def test_two_senders_have_two_requests_in_flight_and_compress() -> None:
    client = _BlockingClient()
    sender = BulkSender(client, {"content-type": "application/x-ndjson"},  # type: ignore[arg-type]
                        compress=True, workers=2)
    try:
        futures = [sender.submit(b'{"create":{}}\n{"n":%d}\n' % n) for n in range(2)]
        for _ in range(500):
            if client.most_active == 2:
                break
            time.sleep(0.01)
        assert client.most_active == 2  # both inside perform_request at once
        client.release.set()
        assert [f.result(5) for f in futures] == ["PUT /_bulk", "PUT /_bulk"]
    finally:
        sender.close()
    sent = sorted(gzip.decompress(body) for body, _ in client.bodies)
    assert sent == [b'{"create":{}}\n{"n":0}\n', b'{"create":{}}\n{"n":1}\n']
    assert all(h["content-encoding"] == "gzip" for _, h in client.bodies)


def test_spool_counts_removals_other_than_acks(tmp_path: Path) -> None:
    clock = [1000.0]
    spool = Spool(tmp_path / "s.db", 8 << 20, 60, clock=lambda: clock[0])
    assert spool._db.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST
    first = spool.append("alert", 3, b"a\n", key="k1").seq
    spool.append("alert", 3, b"b\n", key="k2")
    before = spool.removals
    spool.ack([first])
    assert spool.removals == before  # delivered: the shipper knows
    spool.append("alert", 3, b"b2\n", key="k2")  # supersedes b
    superseded = spool.removals
    assert superseded > before
    clock[0] += 120
    assert len(spool.expire()) == 1
    assert spool.removals > superseded
    spool.close()


def test_filter_path_keeps_positions_and_matches_wildcards() -> None:
    body: dict[str, Any] = {"errors": True, "took": 3, "items": [
        {"create": {"_id": "a", "status": 201, "result": "created"}},
        {"index": {"_id": "b", "status": 400,
                   "error": {"type": "document_parsing_exception", "reason": "bad",
                             "caused_by": {"type": "x"}}}},
    ]}
    wanted = ["errors", "items.*.status", "items.*.error.type", "items.*.error.reason"]
    assert filter_path(body, wanted) == {"errors": True, "items": [
        {"create": {"status": 201}},
        {"index": {"status": 400, "error": {"type": "document_parsing_exception",
                                            "reason": "bad"}}},
    ]}
    assert filter_path(body, ["items.index.error"]) == {"items": [
        {"index": {"error": body["items"][1]["index"]["error"]}}]}
    assert filter_path(body, ["items.create._id", "items.*.status"]) == {"items": [
        {"create": {"_id": "a", "status": 201}}, {"index": {"status": 400}}]}
    assert filter_path(body, ["took", ""]) == {"took": 3}
    assert filter_path(body, ["nothing.here"]) is None
