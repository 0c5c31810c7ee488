"""Elasticsearch sink against the fake server: delivery, convergence, per-item semantics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.config import ElasticsearchSection
from agent.errors import SinkError
from agent.events import Event, LogSource
from agent.metrics import SCRAPE_TIME
from agent.sinks.elasticsearch import ElasticsearchSink, ship_alerts
from agent.sinks.es_bulk import Outcome, classify_item
from agent.sinks.es_docs import alerts_stream, events_stream, latest_index
from agent.sinks.factory import build_sinks
from tests.es_server import FakeElasticsearch
from tests.es_server.helpers import (
    IDENTITY,
    fresh_metrics,
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)

ALERTS = alerts_stream("default")
LATEST = latest_index("default")


def _sink(tmp_path: Path, server: FakeElasticsearch, **es: object) -> ElasticsearchSink:
    config = make_config(tmp_path, [server.url], **es)
    return open_sink(config)


def _ids(server: FakeElasticsearch, target: str) -> list[str]:
    return sorted(d.id for d in server.cluster.docs(target))


def test_classification_table() -> None:
    assert classify_item(201, "")[0] is Outcome.DELIVERED
    assert classify_item(200, "")[0] is Outcome.DELIVERED
    assert classify_item(409, "version_conflict_engine_exception")[0] is Outcome.DUPLICATE
    assert classify_item(429, "es_rejected_execution_exception") == (Outcome.RETRY, "rejected")
    assert classify_item(503, "unavailable_shards_exception") == (Outcome.RETRY, "unavailable")
    assert classify_item(403, "cluster_block_exception") == (Outcome.RETRY, "cluster_block")
    assert classify_item(429, "cluster_block_exception") == (Outcome.RETRY, "cluster_block")
    assert classify_item(400, "document_parsing_exception")[0] is Outcome.DEAD
    assert classify_item(404, "index_not_found_exception")[0] is Outcome.DEAD


def test_alerts_reach_data_stream_and_latest_index(tmp_path: Path,
                                                   server: FakeElasticsearch) -> None:
    sink = _sink(tmp_path, server)
    try:
        for i in range(20):
            sink.emit(make_alert(i, level="high"))
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    docs = server.cluster.docs(ALERTS)
    assert len(docs) == 20
    assert len(server.cluster.docs(LATEST)) == 20
    doc = docs[0].source
    assert doc["event"]["kind"] == "alert"
    assert doc["data_stream"] == {"type": "logs", "dataset": "vedette.alerts",
                                  "namespace": "default"}
    assert doc["source"]["ip"].startswith("198.51.100.")
    assert doc["threat"]["technique"]["id"] == ["T1110"]
    ds = server.cluster.get_data_stream(ALERTS)
    assert ds is not None and ds["template"] == "logs-vedette.alerts"  # ours, not logs-*-*
    assert ds["ilm_policy"] == "vedette"
    assert all(r.headers["content-type"].startswith("application/vnd.elasticsearch+x-ndjson")
               for r in server.bulk_requests())


def test_updates_converge_without_duplicates(tmp_path: Path, server: FakeElasticsearch) -> None:
    sink = _sink(tmp_path, server)
    alert = make_alert(1)
    try:
        for revision in range(4):
            alert.revision, alert.count = revision, revision + 1
            sink.emit(alert.snapshot())
            assert wait_until(sink.idle, 10)
        # A replayed older snapshot (e.g. the spool re-read after a crash) changes nothing.
        alert.revision, alert.count = 1, 2
        sink.emit(alert.snapshot())
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    history = server.cluster.docs(ALERTS)
    assert sorted(d.id for d in history) == [f"{alert.id}-{r}" for r in range(4)]
    latest = server.cluster.docs(LATEST)
    assert len(latest) == 1 and latest[0].id == alert.id
    assert latest[0].source["vedette"]["alert"]["revision"] == 3
    assert latest[0].source["vedette"]["alert"]["count"] == 4
    assert sink.counts.duplicates == 2  # the replayed revision 1: history 409 + latest 409


def test_unsent_snapshots_are_superseded(tmp_path: Path, server: FakeElasticsearch) -> None:
    server.set_down(True)
    sink = _sink(tmp_path, server)
    alert = make_alert(2)
    try:
        for revision in range(5):
            alert.revision = revision
            sink.emit(alert.snapshot())
        assert len(sink.spool) == 1
        assert sample(sink.metrics, "vedette_es_spool_superseded_total") == 4
        server.set_down(False)
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    latest = server.cluster.docs(LATEST)
    assert latest[0].source["vedette"]["alert"]["revision"] == 4
    # Revision 0 was already read into the shipper's memory when it was superseded: not sent.
    assert [d.id for d in server.cluster.docs(ALERTS)] == [f"{alert.id}-4"]


def test_per_item_rejections_retried_mapping_errors_dead_lettered(
    tmp_path: Path, server: FakeElasticsearch
) -> None:
    sink = _sink(tmp_path, server)
    alerts = [make_alert(i) for i in range(6)]
    bad = make_alert(99, matched={"destination.ip": "not-an-ip"})
    f = server.faults
    f.item_statuses[f"{alerts[0].id}-0"] = [429, 429]
    f.item_statuses[f"{alerts[1].id}-0"] = [503]
    f.item_statuses[f"{alerts[2].id}-0"] = [403]  # cluster_block_exception: transient
    f.item_statuses[alerts[3].id] = [500]  # the latest-index item of alert 3
    f.item_statuses[f"{alerts[4].id}-0"] = [400]  # injected document_parsing_exception
    try:
        for alert in [*alerts, bad]:
            sink.emit(alert)
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    metrics = sink.metrics
    history = set(_ids(server, ALERTS))
    assert history == {f"{a.id}-0" for a in alerts if a is not alerts[4]}
    assert len(_ids(server, LATEST)) == 6  # alert 4's latest item was fine; bad's was not
    assert sample(metrics, "vedette_es_retries_total", reason="rejected") == 2
    assert sample(metrics, "vedette_es_retries_total", reason="unavailable") == 2
    assert sample(metrics, "vedette_es_retries_total", reason="cluster_block") == 1
    assert sample(metrics, "vedette_es_dead_lettered_total", stream="alerts") == 2
    assert sample(metrics, "vedette_es_dead_lettered_total", stream="alerts_latest") == 1
    lines = [json.loads(x) for x in sink.dead_letter.path.read_text().splitlines()]
    assert len(lines) == 3
    mapping = [x for x in lines if x["action"].get("create", {}).get("_id") == f"{bad.id}-0"]
    assert mapping[0]["error"]["type"] == "document_parsing_exception"
    assert "destination.ip" in mapping[0]["error"]["reason"]
    assert mapping[0]["document"]["destination"]["ip"] == "not-an-ip"


def test_whole_request_failures_and_split_on_413(tmp_path: Path,
                                                 server: FakeElasticsearch) -> None:
    server.faults.request_statuses = [429, 503, 502]
    sink = _sink(tmp_path, server, batch_max_age_seconds=0.3)
    try:
        for i in range(10):
            sink.emit(make_alert(i))
        assert wait_until(sink.idle, 10)
        # Now a cluster whose max content length fits only a few documents per request.
        server.faults.max_content_length = 9000
        for i in range(10, 30):
            sink.emit(make_alert(i))
        assert wait_until(sink.idle, 20)
    finally:
        sink.close()
    metrics = sink.metrics
    assert len(_ids(server, ALERTS)) == 30
    assert sample(metrics, "vedette_es_request_failures_total", reason="rejected") == 1
    assert sample(metrics, "vedette_es_request_failures_total", reason="unavailable") == 2
    assert sample(metrics, "vedette_es_request_failures_total", reason="too_large") >= 1
    assert sample(metrics, "vedette_es_dead_lettered_total", stream="alerts") == 0
    assert any(r.status == 413 for r in server.bulk_requests())


def test_reset_mid_response_and_timeouts_do_not_duplicate(tmp_path: Path,
                                                          server: FakeElasticsearch) -> None:
    server.faults.reset_mid_response = 2
    sink = _sink(tmp_path, server, request_timeout_seconds=0.5)
    try:
        for i in range(40):
            sink.emit(make_alert(i))
        assert wait_until(sink.idle, 15)
        server.faults.delay_seconds = 0.8  # the server indexes, the client times out
        for i in range(40, 50):
            sink.emit(make_alert(i))
        assert wait_until(lambda: sample(sink.metrics, "vedette_es_request_failures_total",
                                         reason="timeout") >= 1, 10)
        server.faults.delay_seconds = 0
        assert wait_until(sink.idle, 15)
    finally:
        sink.close()
    metrics = sink.metrics
    assert len(_ids(server, ALERTS)) == 50
    shipped = sample(metrics, "vedette_es_docs_shipped_total", stream="alerts")
    dups = sample(metrics, "vedette_es_duplicates_avoided_total", stream="alerts")
    assert shipped + dups == 50 and dups > 0
    assert sample(metrics, "vedette_es_request_failures_total", reason="connection") >= 2


def test_raw_events_sampled_and_filtered(tmp_path: Path, server: FakeElasticsearch) -> None:
    sink = _sink(tmp_path, server, ship_events=True, events_datasets=["system.auth"])
    events = [Event(1_700_000_000.0 + i, LogSource("linux", service="auth"),
                    {"event.dataset": "system.auth" if i % 2 else "nginx.access",
                     "source.ip": "203.0.113.5", "user.name": f"u{i}"}) for i in range(10)]
    try:
        kept = [sink.emit_event(e) for e in events]
        sink.emit_event(events[1])  # the same event again: same _id, a 409
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    assert kept == [bool(i % 2) for i in range(10)]
    docs = server.cluster.docs(events_stream("default"))
    assert len(docs) == 5
    assert {d.source["event"]["dataset"] for d in docs} == {"vedette.events"}
    assert sink.counts.duplicates == 1


def test_events_off_by_default(tmp_path: Path, server: FakeElasticsearch) -> None:
    sink = _sink(tmp_path, server)
    try:
        assert not sink.emit_event(Event(1.0, LogSource("linux"), {"a": 1}))
        assert len(sink.spool) == 0
    finally:
        sink.close()


def test_ship_alerts_backfill(tmp_path: Path, server: FakeElasticsearch) -> None:
    config = make_config(tmp_path, [server.url])
    metrics = fresh_metrics()
    report = ship_alerts(config, IDENTITY, metrics, (make_alert(i) for i in range(30)), 10)
    assert report.complete and report.emitted == 30
    assert report.delivered == 60 and report.duplicates == 0  # history + latest per alert
    assert len(_ids(server, ALERTS)) == 30
    # Unreachable: reports what is still spooled, and the next backfill finishes the job.
    server.set_down(True)
    report = ship_alerts(config, IDENTITY, metrics, (make_alert(i) for i in range(30, 40)), 0.5)
    assert not report.complete and report.still_spooled == 10
    assert report.request_failures.get("connection", 0) >= 1
    server.set_down(False)
    report = ship_alerts(config, IDENTITY, metrics, [], 10)
    assert report.complete
    assert len(_ids(server, ALERTS)) == 40


def test_no_hosts_means_no_sink(tmp_path: Path) -> None:
    config = make_config(tmp_path, [])
    assert all(s.name != "elasticsearch" for s in build_sinks(config, IDENTITY, fresh_metrics()))


def test_spool_gauges_match_the_catalogue_and_follow_sink_rebuilds(
    tmp_path: Path, server: FakeElasticsearch
) -> None:
    server.set_down(True)
    config = make_config(tmp_path, [server.url])
    metrics = fresh_metrics()
    first = open_sink(config, metrics)
    first.emit(make_alert(1))
    # A config reload builds the new sink before closing the old one: same registry.
    second = open_sink(config, metrics)
    first.close()
    try:
        specs = {s.name: s for s in SCRAPE_TIME if s.name.startswith("vedette_es_spool_")}
        families = {m.name: m for m in metrics.registry.collect()
                    if m.name.startswith("vedette_es_spool_") and m.type == "gauge"}
        assert set(families) == set(specs)
        for name, family in families.items():
            assert family.documentation == specs[name].help
            assert all(tuple(s.labels) == specs[name].labels for s in family.samples)
        assert sample(metrics, "vedette_es_spool_records", spool="spool") == 1
        assert sample(metrics, "vedette_es_spool_oldest_age_seconds", spool="spool") >= 0
        assert sample(metrics, "vedette_es_spool_limit_bytes", spool="spool") == (
            config.elasticsearch.spool_max_bytes)
    finally:
        second.close()


def test_close_is_prompt_while_a_request_hangs(tmp_path: Path, server: FakeElasticsearch) -> None:
    server.faults.delay_seconds = 6
    sink = _sink(tmp_path, server, request_timeout_seconds=10)
    sink.emit(make_alert(1))
    assert wait_until(lambda: bool(server.requests) and server.requests[-1].path != "/_bulk"
                      and sink.shipper.in_flight() == 1, 5)
    time.sleep(0.3)  # the bulk request is now hanging in the server
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 3
    config = make_config(tmp_path, [server.url])
    server.faults.delay_seconds = 0
    again = open_sink(config)
    try:
        assert len(again.spool) == 1  # still spooled for the next start
        assert wait_until(again.idle, 15)
    finally:
        again.close()
    assert len(_ids(server, ALERTS)) == 1


def test_fails_over_to_the_next_host(tmp_path: Path, server: FakeElasticsearch) -> None:
    dead = FakeElasticsearch().start()
    dead_url = dead.url
    dead.stop()
    config = make_config(tmp_path, [dead_url, server.url])
    sink = open_sink(config)
    try:
        for i in range(5):
            sink.emit(make_alert(i))
        assert wait_until(sink.idle, 15)
    finally:
        sink.close()
    assert len(_ids(server, ALERTS)) == 5


def test_unusable_spool_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    config = make_config(tmp_path, ["http://127.0.0.1:9"], spool_dir=str(blocker / "spool"))
    with pytest.raises(SinkError, match="cannot open the Elasticsearch spool"):
        open_sink(config)


def test_events_sampled_at_the_configured_rate(tmp_path: Path, server: FakeElasticsearch) -> None:
    server.set_down(True)
    sink = _sink(tmp_path, server, ship_events=True, events_sample_rate=0.5)
    try:
        kept = sum(sink.emit_event(Event(float(i), LogSource("linux"), {"n": i}))
                   for i in range(2000))
    finally:
        sink.close()
    assert 850 < kept < 1150  # binomial(2000, 0.5): ±150 is more than 6 standard deviations


def test_documents_older_than_the_age_limit_are_dropped_and_counted(
    tmp_path: Path, server: FakeElasticsearch
) -> None:
    server.set_down(True)
    now = [1_800_000_000.0]
    config = make_config(tmp_path, [server.url], spool_max_age_seconds=3600)
    metrics = fresh_metrics()
    sink = open_sink(config, metrics,
                             clock=lambda: now[0])
    try:
        for i in range(3):
            sink.emit(make_alert(i))
        now[0] += 3601
        assert wait_until(lambda: len(sink.spool) == 0, 10)
        assert sample(metrics, "vedette_es_spool_dropped_total", reason="age") == 3
    finally:
        sink.close()


@pytest.mark.parametrize(("compression", "gzipped"), [(True, True), (False, False),
                                                      ("auto", False)])
def test_compression_setting_decides_gzip(
    tmp_path: Path, server: FakeElasticsearch, compression: object, gzipped: bool
) -> None:
    """``auto`` (the default) sends plain NDJSON to a loopback host such as the test server."""
    sink = _sink(tmp_path, server, compression=compression)
    try:
        sink.emit(make_alert(1))
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    assert len(_ids(server, ALERTS)) == 1
    encodings = {r.headers.get("content-encoding") for r in server.bulk_requests()}
    assert encodings == ({"gzip"} if gzipped else {None})


@pytest.mark.parametrize(("hosts", "gzipped"), [
    (["https://es1.example.org:9200"], True),
    (["http://127.0.0.1:9200", "https://es1.example.org:9200"], True),
    (["https://10.0.0.5:9200"], True),
    (["http://localhost:9200"], False),
    (["http://127.0.0.2:9200", "http://[::1]:9200"], False),
])
def test_auto_compression_is_off_only_when_every_host_is_loopback(
    hosts: list[str], gzipped: bool
) -> None:
    assert ElasticsearchSection(hosts=hosts).gzip_bodies() is gzipped
    assert ElasticsearchSection(hosts=hosts, compression=True).gzip_bodies() is True
    assert ElasticsearchSection(hosts=hosts, compression=False).gzip_bodies() is False
