"""The ``/metrics`` endpoint: prometheus-client's WSGI app on a threaded server.

Binds to 127.0.0.1 by default. Optional TLS (cert + key files) and HTTP basic auth (password
from a file or the environment, compared in constant time).

``/readyz`` answers 200 once the agent has started (the end-to-end tests wait for it).
``/healthz`` answers 503 ``starting`` before that, then 503 with one reason per line whenever
the ``health`` callable (:class:`agent.health.Health`) reports any (no rules, a degraded
collector, queue drops, a refusing spool), and 200 ``ok`` otherwise.
"""

from __future__ import annotations

import base64
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from agent.metrics_http import OnDrop, PooledWSGIServer

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingServer(PooledWSGIServer):
    """Bounded worker pool, idle connections closed and counted (agent/metrics_http.py)."""


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6  # listen_address "::1" or "::" (dual stack on Linux)


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # seconds for the TLS handshake and the request once the client spoke

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        address: str = "127.0.0.1",
        port: int = 9787,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        on_drop: OnDrop | None = None,
    ) -> None:
        self.ready = threading.Event()
        self.health: Callable[[], list[str]] | None = None
        """Reasons the agent is unhealthy (empty: healthy); set by the daemon."""
        metrics_app = make_wsgi_app(registry)
        app: WsgiApp = self._route(metrics_app)
        if username and password is not None:
            app = _basic_auth(app, username, password)
        server_class = _ThreadingServer6 if ":" in address else _ThreadingServer
        self._server = make_server(
            address, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        if on_drop is not None:
            self._server.on_drop = on_drop
        if tls_cert and tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(tls_cert), str(tls_key))
            # The handshake runs on the first read, in the request's own thread: a client that
            # connects and stays silent must not stall the accept loop for everyone else.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()

    def _route(self, metrics_app: WsgiApp) -> WsgiApp:
        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path in ("/healthz", "/readyz"):
                status, body = self._health(path == "/readyz")
                start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
                return [body]
            if path in ("/metrics", "/"):
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]

        return app


    def _health(self, ready_only: bool) -> tuple[str, bytes]:
        if not self.ready.is_set():
            return "503 Service Unavailable", b"starting\n"
        reasons = [] if ready_only or self.health is None else self.health()
        if reasons:
            return "503 Service Unavailable", "".join(f"{r}\n" for r in reasons).encode()
        return "200 OK", b"ok\n"


def _basic_auth(app: WsgiApp, username: str, password: str) -> WsgiApp:
    expected = base64.b64encode(f"{username}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        # bytes: compare_digest refuses non-ASCII str, and the header is attacker-controlled
        if scheme.lower() == "basic" and hmac.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), expected.encode()
        ):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="vedette"')],
        )
        return [b"unauthorized\n"]

    return guarded
