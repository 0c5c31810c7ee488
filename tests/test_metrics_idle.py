"""/metrics under ~200 idle connections: bounded threads, scrapes still answered, one warning."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections import Counter

import pytest
from foundation_helpers import fresh_metrics

from agent import metrics_server
from agent.metrics_server import MetricsServer

IDLE = 200


def _scrape(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    status = conn.getresponse().status
    conn.close()
    return status


def test_idle_connections_hold_no_thread_and_are_closed_once_counted(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    drops: Counter[str] = Counter()
    server = MetricsServer(fresh_metrics().registry, "127.0.0.1", 0,
                           on_drop=lambda reason: drops.update([reason]))
    server._server.idle_timeout = 1.5  # type: ignore[attr-defined]  # a test-sized timeout
    server.start()
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(IDLE)]
    try:
        with caplog.at_level(logging.WARNING, logger="agent.metrics_http"):
            started = time.monotonic()
            assert _scrape(server.port) == 200  # answered at once despite 200 silent clients
            assert time.monotonic() - started < 2
            assert threading.active_count() <= threads_before + 4  # the pool, not 200 threads
            deadline = time.monotonic() + 10
            while drops["idle"] < IDLE and time.monotonic() < deadline:
                time.sleep(0.05)
            assert drops["idle"] == IDLE
            for sock in idle:  # the server closed them: reads see end of file
                sock.settimeout(2)
                assert sock.recv(1) == b""
            assert _scrape(server.port) == 200
        warnings = [r for r in caplog.records if r.name == "agent.metrics_http"]
        assert len(warnings) == 1 and "idle" in warnings[0].getMessage()
        # socketserver's handle_error would print this banner and a traceback per connection
        # (a "--- Logging error ---" from a handler an earlier test left on a closed stream is
        # not the server's)
        err = capfd.readouterr().err
        assert "Exception occurred during processing of request" not in err
        assert "TimeoutError" not in err
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_too_many_idle_connections_drop_the_oldest_and_a_stalled_request_times_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_server._QuietHandler, "timeout", 1.0)  # the 10 s, test-sized
    drops: Counter[str] = Counter()
    server = MetricsServer(fresh_metrics().registry, "127.0.0.1", 0,
                           on_drop=lambda reason: drops.update([reason]))
    server._server.max_waiting = 50  # type: ignore[attr-defined]
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(80)]
    try:
        deadline = time.monotonic() + 5
        while drops["overflow"] < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drops["overflow"] == 30
        assert _scrape(server.port) == 200  # a fresh scrape is never the one dropped
        # a client that starts a request and stalls holds a worker only for the timeout
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        slow.settimeout(15)
        assert slow.recv(1) == b""  # closed by the request timeout
        assert drops["error"] == 1
        slow.close()
    finally:
        for sock in idle:
            sock.close()
        server.stop()
