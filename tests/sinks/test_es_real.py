"""The Elasticsearch sink against a real Elasticsearch 9 node (TLS, basic auth, a real mapper).

One node per session (tests/sinks/conftest.py); every test ships into its own namespace, so
data streams and the latest index never mix between tests. Templates are cluster-wide and
installed idempotently by whichever test comes first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.commands import es as es_command
from agent.sinks.elasticsearch import ElasticsearchSink
from agent.sinks.es_client import build_client, json_headers
from agent.sinks.es_docs import TRUNCATED_TAG, alerts_stream, latest_index
from agent.sinks.es_templates import (
    ILM_POLICY,
    MAPPINGS,
    SETTINGS,
    TEMPLATE_VERSION,
    install,
)
from tests.es_server.helpers import make_alert, make_config, open_sink, sample, wait_until
from tests.es_server.real_node import (
    LIMITED_PASSWORD,
    LIMITED_USERS,
    PASSWORD,
    RealElasticsearch,
)

_namespaces = iter(range(1, 1_000_000))


def _namespace() -> str:
    return f"t{next(_namespaces)}"


def _es(node: RealElasticsearch, namespace: str, **extra: Any) -> dict[str, Any]:
    assert node.certs is not None
    return {"namespace": namespace, "username": "elastic", "password": PASSWORD,
            "ca_file": str(node.certs.ca), "request_timeout_seconds": 30, **extra}


def _sink(tmp_path: Path, node: RealElasticsearch, namespace: str, **extra: Any
          ) -> ElasticsearchSink:
    return open_sink(make_config(tmp_path, [node.url], **_es(node, namespace, **extra)))


def _ship(sink: ElasticsearchSink, alerts: list[Any], timeout: float = 60) -> None:
    try:
        for alert in alerts:
            sink.emit(alert)
        assert wait_until(sink.idle, timeout, step=0.1), "not everything was acknowledged"
    finally:
        sink.close()


def _setup(tmp_path: Path, node: RealElasticsearch) -> None:
    section = make_config(tmp_path, [node.url], **_es(node, "default")).elasticsearch
    client = build_client(section)
    try:
        assert install(client, json_headers(section)).ok
    finally:
        client.close()


def _ilm(node: RealElasticsearch) -> bool:
    return "x-pack-ilm" in node.modules()


def test_setup_command_installs_and_adapts_to_the_distribution(
        tmp_path: Path, real_es: RealElasticsearch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "vedette.yaml"
    section = {"hosts": [real_es.url], "spool_dir": str(tmp_path / "spool"),
               **_es(real_es, "default")}
    config.write_text(yaml.safe_dump({"agent": {"state_dir": str(tmp_path / "state")},
                                      "elasticsearch": section}))
    assert es_command.setup_command(argparse.Namespace(config=config)) == 0
    first = capsys.readouterr().out
    assert es_command.setup_command(argparse.Namespace(config=config)) == 0
    second = capsys.readouterr().out
    assert "failed" not in first and "failed" not in second
    assert second.count("unchanged") == second.count(" component ") + second.count(" index ") \
        + second.count(" ilm ")
    templates = real_es.request("GET", "/_index_template/logs-vedette.*")["index_templates"]
    assert {t["name"] for t in templates} == {"logs-vedette.alerts", "logs-vedette.events"}
    assert all(t["index_template"]["version"] == TEMPLATE_VERSION for t in templates)
    component = real_es.request("GET", f"/_component_template/{SETTINGS}")
    template = component["component_templates"][0]["component_template"]["template"]
    if _ilm(real_es):
        assert template["settings"]["index"]["lifecycle"]["name"] == ILM_POLICY
    else:  # this distribution has no ILM: the data-stream lifecycle instead, and said so
        assert template["lifecycle"]["data_retention"] == "90d"
        assert "no ILM on the cluster" in first
    mapping = real_es.request("GET", f"/_component_template/{MAPPINGS}")
    props = mapping["component_templates"][0]["component_template"]["template"]["mappings"][
        "properties"]
    assert props["vedette"]["properties"]["matched"] == {"type": "flattened",
                                                         "ignore_above": 1024}
    assert props["source"]["properties"]["ip"]["type"] == "ip"


def test_alerts_create_data_stream_with_the_shipped_mapping(
        tmp_path: Path, real_es: RealElasticsearch) -> None:
    ns = _namespace()
    sink = _sink(tmp_path, real_es, ns)
    alerts = [make_alert(i, level="high") for i in range(40)]
    _ship(sink, alerts)
    assert sink.counts.delivered == 80 and sink.counts.dead_lettered == 0
    resolved = real_es.request("GET", f"/_resolve/index/{alerts_stream(ns)}")
    assert [d["name"] for d in resolved["data_streams"]] == [alerts_stream(ns)]
    assert real_es.count(alerts_stream(ns)) == 40
    assert real_es.count(latest_index(ns)) == 40
    # The real mapper: fields got the types of the template we ship, not dynamic guesses.
    fields = real_es.request(
        "GET", f"/{alerts_stream(ns)}/_mapping/field/source.ip,vedette.matched,event.severity,"
        "@timestamp,rule.id")
    (backing,) = fields.values()
    types = {name: next(iter(m["mapping"].values()))["type"]
             for name, m in backing["mappings"].items()}
    assert types == {"source.ip": "ip", "vedette.matched": "flattened",
                     "event.severity": "long", "@timestamp": "date", "rule.id": "keyword"}
    hits = real_es.search(alerts_stream(ns), {"term": {"source.ip": "198.51.100.7"}})
    assert [h["_source"]["vedette"]["alert"]["status"] for h in hits] == ["open"]
    assert hits[0]["_id"] == f"{alerts[7].id}-0"


def test_replay_is_409_not_a_duplicate(tmp_path: Path, real_es: RealElasticsearch) -> None:
    ns = _namespace()
    alerts = [make_alert(i) for i in range(25)]
    _ship(_sink(tmp_path / "a", real_es, ns), alerts)
    again = _sink(tmp_path / "b", real_es, ns)  # a fresh spool: as after a crash before the ack
    _ship(again, alerts)
    assert again.counts.delivered == 0
    assert again.counts.duplicates == 50  # history: create → 409; latest: same version → 409
    assert sample(again.metrics, "vedette_es_duplicates_avoided_total", stream="alerts") == 25
    assert real_es.count(alerts_stream(ns)) == 25
    assert real_es.count(latest_index(ns)) == 25


def test_latest_index_converges_with_external_versions(
        tmp_path: Path, real_es: RealElasticsearch) -> None:
    ns = _namespace()
    newest = make_alert(3, revision=4, count=9)
    _ship(_sink(tmp_path / "a", real_es, ns), [newest])
    # Older revisions arriving late (another spool, a resend) must not overwrite it.
    late = _sink(tmp_path / "b", real_es, ns)
    try:
        for r in (1, 2, 3):  # one at a time: the spool would supersede unsent older revisions
            late.emit(make_alert(3, revision=r, count=r + 1))
            assert wait_until(late.idle, 60, step=0.1)
    finally:
        late.close()
    (doc,) = real_es.search(latest_index(ns))
    assert doc["_id"] == newest.id and doc["_version"] == 5
    assert doc["_source"]["vedette"]["alert"]["revision"] == 4
    assert late.counts.duplicates == 3  # the three latest writes refused as older
    assert real_es.count(alerts_stream(ns)) == 4  # every revision is in the history


def test_huge_cjk_command_is_accepted_and_marked_truncated(
        tmp_path: Path, real_es: RealElasticsearch) -> None:
    ns = _namespace()
    command = "sudo " + "漢字" * 5500  # 11,000 CJK characters: 33,005 bytes of UTF-8
    alert = make_alert(1, matched={"process.command_line": command, "user.name": "root"})
    sink = _sink(tmp_path, real_es, ns)
    _ship(sink, [alert])
    assert sink.counts.dead_lettered == 0 and sink.counts.delivered == 2
    (doc,) = real_es.search(alerts_stream(ns))
    source = doc["_source"]
    assert TRUNCATED_TAG in source["tags"]
    assert "vedette.matched.process.command_line" in source["vedette"]["truncated"]
    kept = source["vedette"]["matched"]["process.command_line"]
    assert command.startswith(kept) and len(kept.encode()) <= 8192


def test_mapping_alone_keeps_terms_under_the_lucene_limit(
        tmp_path: Path, real_es: RealElasticsearch) -> None:
    """Without the sink's truncation (a document from elsewhere, an older agent), the
    template's ignore_above still lets a real ES accept a 33 KB flattened/keyword value."""
    ns = _namespace()
    _ship(_sink(tmp_path, real_es, ns), [make_alert(0)])  # creates the stream
    value = "漢" * 11_000
    doc = {"@timestamp": "2026-01-01T00:00:00Z", "vedette": {"matched": {"cmd": value},
                                                            "group": {"cmd": value}},
           "user": {"name": value}, "data_stream": {"type": "logs",
                                                    "dataset": "vedette.alerts",
                                                    "namespace": ns}}
    body = (json.dumps({"create": {"_index": alerts_stream(ns), "_id": "raw-1"}}) + "\n"
            + json.dumps(doc, ensure_ascii=False) + "\n").encode()
    result = real_es.request("POST", "/_bulk", body, ndjson=True)
    assert result["errors"] is False, result


def test_missing_index_privilege_keeps_alerts_spooled_until_granted(
        tmp_path: Path, real_es: RealElasticsearch) -> None:
    """A real per-item 403 security_exception (the user may write the history stream but not
    the latest index): nothing is dead-lettered, history is delivered, the latest writes stay
    spooled as an auth problem and go out once the role is fixed."""
    ns = _namespace()
    _setup(tmp_path, real_es)
    user, password = LIMITED_USERS[0], LIMITED_PASSWORD
    history = {f"logs-vedette.alerts-{ns}": ["create_doc", "auto_configure"]}
    real_es.grant(user, history)
    assert real_es.certs is not None
    config = make_config(tmp_path / "limited", [real_es.url], namespace=ns, username=user,
                         password=password, ca_file=str(real_es.certs.ca),
                         request_timeout_seconds=30, retry_backoff_max_seconds=0.5)
    sink = open_sink(config)
    try:
        for i in range(10):
            sink.emit(make_alert(i))
        assert wait_until(lambda: real_es.count(alerts_stream(ns)) == 10, 60, step=0.5)
        assert wait_until(lambda: sample(sink.metrics, "vedette_es_retries_total",
                                         reason="auth") > 0, 30, step=0.2)
        assert sink.counts.dead_lettered == 0
        assert len(sink.spool) == 10  # each record still owes its latest-index write
        assert sample(sink.metrics, "vedette_es_auth_failures_total") > 0
        real_es.grant(user, {**history, f"vedette-alerts-latest-{ns}": [
            "index", "create_index"]})
        assert wait_until(sink.idle, 60, step=0.2)
    finally:
        sink.close()
    assert real_es.count(latest_index(ns)) == 10
    assert sink.counts.dead_lettered == 0


def test_status_reports_version_and_missing_privileges(
        tmp_path: Path, real_es: RealElasticsearch, capsys: pytest.CaptureFixture[str]) -> None:
    ns = _namespace()
    user, password = LIMITED_USERS[1], LIMITED_PASSWORD
    real_es.grant(user, {f"logs-vedette.alerts-{ns}": ["create_doc"]})
    assert real_es.certs is not None
    config = tmp_path / "vedette.yaml"
    section = {"hosts": [real_es.url], "spool_dir": str(tmp_path / "spool"), "namespace": ns,
               "username": user, "password": password, "ca_file": str(real_es.certs.ca)}
    config.write_text(yaml.safe_dump({"agent": {"state_dir": str(tmp_path / "state")},
                                      "elasticsearch": section}))
    assert es_command.status_command(argparse.Namespace(config=config)) == 3
    out = capsys.readouterr().out
    assert "elasticsearch: reachable" in out
    assert f"MISSING index on vedette-alerts-latest-{ns}" in out
    assert f"create_doc on logs-vedette.alerts-{ns}" not in out
