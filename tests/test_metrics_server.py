"""The /metrics endpoint on loopback: healthz, basic auth, TLS with a throwaway certificate."""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from foundation_helpers import fresh_metrics
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics_server import MetricsServer

Factory = Callable[..., MetricsServer]


_STOPPING: list[threading.Thread] = []


@pytest.fixture(scope="module", autouse=True)
def _join_stoppers() -> Iterator[None]:
    yield
    for thread in _STOPPING:
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def serve() -> Iterator[Factory]:
    started: list[MetricsServer] = []

    def make(address: str = "127.0.0.1", **kwargs: object) -> MetricsServer:
        registry = fresh_metrics().registry
        server = MetricsServer(registry, address, 0, **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    # shutdown() waits up to one 0.5 s poll interval: stop in the background, join at the end
    for server in started:
        thread = threading.Thread(target=server.stop, daemon=True)
        thread.start()
        _STOPPING.append(thread)


def get(
    server: MetricsServer,
    path: str,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=5
        )
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_metrics_exposes_the_registry(serve: Factory) -> None:
    server = serve()
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"vedette_build_info", "vedette_events_dropped", "vedette_job_runs"} <= names
    assert get(server, "/")[0] == 200
    assert get(server, "/nope")[0] == 404


def test_healthz_is_503_until_ready(serve: Factory) -> None:
    server = serve()
    status, _, body = get(server, "/healthz")
    assert (status, body) == (503, b"starting\n")
    server.ready.set()
    status, _, body = get(server, "/healthz")
    assert (status, body) == (200, b"ok\n")


def test_basic_auth(serve: Factory) -> None:
    server = serve(username="prom", password="s3cret")
    status, headers, _ = get(server, "/metrics")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="vedette"'
    assert get(server, "/metrics", basic("prom", "wrong"))[0] == 401
    assert get(server, "/metrics", basic("other", "s3cret"))[0] == 401
    assert get(server, "/metrics", {"Authorization": "Bearer abc"})[0] == 401
    assert get(server, "/metrics", {"Authorization": "Basic \u00e9\u00e9"})[0] == 401
    assert get(server, "/healthz")[0] == 401  # everything is behind auth
    assert get(server, "/metrics", basic("prom", "s3cret"))[0] == 200
    assert get(server, "/metrics", {"Authorization": basic("prom", "s3cret")["Authorization"]
                                    .replace("Basic", "basic")})[0] == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


def test_tls(serve: Factory, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = serve(tls_cert=cert, tls_key=key, username="prom", password="pw")
    status, _, body = get(server, "/metrics", basic("prom", "pw"), client_context(cert))
    assert status == 200 and b"vedette_build_info" in body
    assert get(server, "/metrics", None, client_context(cert))[0] == 401
    # plain HTTP on the TLS port gets nothing useful, and the server keeps serving
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        get(server, "/metrics", basic("prom", "pw"))
    assert get(server, "/metrics", basic("prom", "pw"), client_context(cert))[0] == 200


def test_tls_client_that_never_handshakes_does_not_stall_others(
    serve: Factory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = serve(tls_cert=cert, tls_key=key)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        # connected, silent: the handshake must not be waited for on the accept loop
        status, _, _ = get(server, "/healthz", None, client_context(cert))
    assert status == 503


def test_stop_without_start_returns() -> None:
    server = MetricsServer(fresh_metrics().registry, "127.0.0.1", 0)
    server.stop()


def test_port_in_use_raises(serve: Factory) -> None:
    server = serve()
    with pytest.raises(OSError):
        MetricsServer(fresh_metrics().registry, "127.0.0.1", server.port)


def test_ipv6_loopback(serve: Factory) -> None:
    try:
        server = serve(address="::1")
    except OSError as exc:  # pragma: no cover - host without IPv6
        pytest.skip(f"no IPv6 loopback: {exc}")
    conn = http.client.HTTPConnection("::1", server.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 503
    finally:
        conn.close()


def test_healthz_names_every_reason_and_readyz_only_waits_for_start(serve: Factory) -> None:
    server = serve()
    reasons: list[str] = ["no rules loaded", "collector fim is degraded or failed to start"]
    server.health = lambda: list(reasons)
    assert get(server, "/readyz")[0] == 503
    server.ready.set()
    status, _, body = get(server, "/healthz")
    assert (status, body) == (503, b"no rules loaded\ncollector fim is degraded or failed to "
                                   b"start\n")
    assert get(server, "/readyz")[:3:2] == (200, b"ok\n")
    reasons.clear()
    assert get(server, "/healthz")[:3:2] == (200, b"ok\n")
