"""TLS with a self-signed CA, client certificates, basic and API-key auth, wrong credentials."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.alerts import Alert
from agent.config import effective
from agent.sinks.elasticsearch import AUTH_RULE, ElasticsearchSink
from agent.sinks.es_docs import alerts_stream
from tests.es_server import ALL_PRIVILEGES, Certs, FakeElasticsearch, make_certs, tls_context
from tests.es_server.helpers import (
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)

PASSWORD = "s3cr3t-Passw0rd-XYZ"
KEY_ID, KEY_SECRET = "key-1", "K3y-S3cret-ABC"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(certs: Certs) -> Iterator[FakeElasticsearch]:
    srv = FakeElasticsearch(
        tls=tls_context(str(certs.server_cert), str(certs.server_key)),
        users={"vedette": (PASSWORD, ALL_PRIVILEGES)},
        api_keys={KEY_ID: (KEY_SECRET, ALL_PRIVILEGES)},
    ).start()
    yield srv
    srv.stop()


def _sink(tmp_path: Path, server: FakeElasticsearch, on_alert: list[Alert] | None = None,
          **es: object) -> ElasticsearchSink:
    config = make_config(tmp_path, [server.url], **es)
    return open_sink(config,
                             on_alert=on_alert.append if on_alert is not None else None)


def _delivered(server: FakeElasticsearch) -> int:
    return len(server.cluster.docs(alerts_stream("default")))


def test_tls_basic_auth_password_from_file(tmp_path: Path, server: FakeElasticsearch,
                                           certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    sink = _sink(tmp_path, server, ca_file=str(certs.ca), username="vedette",
                 password_file=str(secret))
    try:
        sink.emit(make_alert(1))
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    assert _delivered(server) == 1
    assert server.bulk_requests()[0].headers["authorization"].startswith("Basic ")
    assert PASSWORD not in caplog.text


def test_api_key_both_forms(tmp_path: Path, server: FakeElasticsearch, certs: Certs) -> None:
    encoded = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
    for i, key in enumerate((encoded, f"{KEY_ID}:{KEY_SECRET}")):
        sink = _sink(tmp_path / str(i), server, ca_file=str(certs.ca), api_key=key)
        try:
            sink.emit(make_alert(i))
            assert wait_until(sink.idle, 10)
        finally:
            sink.close()
    assert _delivered(server) == 2
    assert all(r.headers["authorization"].startswith("ApiKey ") for r in server.bulk_requests())


def test_unknown_ca_is_refused_and_alerts_stay_spooled(tmp_path: Path, server: FakeElasticsearch,
                                                       certs: Certs) -> None:
    sink = _sink(tmp_path, server, ca_file=str(certs.other_ca), username="vedette",
                 password=PASSWORD)
    try:
        sink.emit(make_alert(1))
        assert wait_until(lambda: sample(sink.metrics, "vedette_es_request_failures_total",
                                         reason="connection") >= 1, 10)
        assert len(sink.spool) == 1
        assert sample(sink.metrics, "vedette_es_reachable") == 0
    finally:
        sink.close()
    assert _delivered(server) == 0


def test_client_certificate_required(tmp_path: Path, certs: Certs) -> None:
    srv = FakeElasticsearch(tls=tls_context(str(certs.server_cert), str(certs.server_key),
                                            client_ca=str(certs.ca))).start()
    try:
        sink = _sink(tmp_path, srv, ca_file=str(certs.ca), client_cert_file=str(certs.client_cert),
                     client_key_file=str(certs.client_key))
        try:
            sink.emit(make_alert(1))
            assert wait_until(sink.idle, 10)
        finally:
            sink.close()
        assert _delivered(srv) == 1
    finally:
        srv.stop()


def test_wrong_credentials_logged_counted_alerted_then_recovered(
    tmp_path: Path, server: FakeElasticsearch, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raised: list[Alert] = []
    wrong = "wr0ng-Passw0rd-QQQ"
    sink = _sink(tmp_path, server, raised, ca_file=str(certs.ca), username="vedette",
                 password=wrong, retry_backoff_max_seconds=0.1)
    try:
        for i in range(3):
            sink.emit(make_alert(i))
        assert wait_until(lambda: sample(sink.metrics, "vedette_es_auth_failures_total") >= 3, 10)
        assert wait_until(lambda: bool(raised), 5)
    finally:
        sink.close()
    assert _delivered(server) == 0
    assert raised[0].rule.id == AUTH_RULE.id and raised[0].rule.id.startswith("vedette-internal-")
    loud = [r for r in caplog.records if "REFUSED OUR CREDENTIALS" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelno == logging.ERROR  # loud, but not once per retry
    assert wrong not in caplog.text and PASSWORD not in caplog.text
    # Fixed credentials (config reload): the spooled alerts go out, exactly once.
    sink = _sink(tmp_path, server, ca_file=str(certs.ca), username="vedette", password=PASSWORD)
    try:
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    assert _delivered(server) == 3


def test_secrets_masked_in_effective_config(tmp_path: Path) -> None:
    config = make_config(tmp_path, ["https://127.0.0.1:9200"], username="u", password=PASSWORD)
    text = str(effective(config))
    assert PASSWORD not in text and "********" in text
    config = make_config(tmp_path, ["https://127.0.0.1:9200"], api_key=KEY_SECRET)
    assert KEY_SECRET not in str(effective(config))
