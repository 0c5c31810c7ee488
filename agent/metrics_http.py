"""The ``/metrics`` HTTP server's connection handling: a bounded pool, idle connections dropped.

The standard library's threading server gives every accepted connection its own thread until
the client speaks; 200 connections that never send a byte were 200 threads, each ending after
its timeout with a 17-line traceback in the log. Here one thread (the server loop) accepts and
*waits* for connections with a selector — an idle connection costs a file descriptor, not a
thread — and a connection is handed to one of ``workers`` threads only once its first bytes
arrived (the TLS handshake and the request are then read with a ``request_timeout``):

* a connection silent for ``idle_timeout`` seconds is closed (reason ``idle``);
* more than ``max_waiting`` silent connections: the *oldest* is closed (``overflow``), so a
  flood of idle sockets cannot lock Prometheus out — its scrape speaks at once;
* more than ``max_queued`` ready connections waiting for a worker: the new one is closed
  (``busy``), so slow clients cannot queue unbounded work;
* a request that fails (timeout in mid-request, reset, TLS error) is closed (``error``)
  without a traceback.

Each of these calls ``on_drop(reason)`` (the daemon counts them in
``vedette_metrics_connections_dropped_total``); the first one is logged once as a warning.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)

OnDrop = Callable[[str], None]
DROP_REASONS = ("idle", "overflow", "busy", "error")


def _ignore(reason: str) -> None:
    return None


class PooledWSGIServer(WSGIServer):
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog (socketserver's 5 drops SYNs under a burst)
    workers = 4
    max_queued = 32
    max_waiting = 256
    idle_timeout = 10.0
    on_drop: OnDrop = staticmethod(_ignore)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="metrics-http")
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._lock = threading.Lock()
        self._in_pool = 0
        self._warned = False

    # ------------------------------------------------------------------ the loop

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        waiting: dict[socket.socket, tuple[Any, float]] = {}  # insertion order = age
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=poll_interval):
                    if key.fileobj is self.socket:
                        self._accept(selector, waiting)
                    else:
                        conn = key.fileobj
                        assert isinstance(conn, socket.socket)
                        selector.unregister(conn)
                        address, _ = waiting.pop(conn)
                        self._dispatch(conn, address)
                now = time.monotonic()
                for conn, (_, deadline) in list(waiting.items()):
                    if deadline > now:
                        break  # later ones arrived later
                    selector.unregister(conn)
                    del waiting[conn]
                    self._drop(conn, "idle")
        finally:
            for conn in waiting:
                self.shutdown_request(conn)
            selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _accept(self, selector: selectors.BaseSelector,
                waiting: dict[socket.socket, tuple[Any, float]]) -> None:
        try:
            conn, address = self.get_request()
        except OSError:
            return
        if not self.verify_request(conn, address):
            self.shutdown_request(conn)
            return
        if len(waiting) >= self.max_waiting:
            oldest = next(iter(waiting))
            selector.unregister(oldest)
            del waiting[oldest]
            self._drop(oldest, "overflow")
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        waiting[conn] = (address, time.monotonic() + self.idle_timeout)

    def _dispatch(self, conn: socket.socket, address: Any) -> None:
        with self._lock:
            if self._in_pool >= self.workers + self.max_queued:
                busy = True
            else:
                busy = False
                self._in_pool += 1
        if busy:
            self._drop(conn, "busy")
            return
        conn.setblocking(True)  # the handler sets its own timeout
        self._pool.submit(self._serve, conn, address)

    def _serve(self, conn: socket.socket, address: Any) -> None:
        try:
            self.finish_request(conn, address)
        except Exception:  # timeouts, resets, TLS errors: the client's problem, not ours
            self._count("error")
        finally:
            self.shutdown_request(conn)
            with self._lock:
                self._in_pool -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        self._count("error")  # never the standard library's traceback on stderr

    # ------------------------------------------------------------------ drops

    def _drop(self, conn: socket.socket, reason: str) -> None:
        self.shutdown_request(conn)
        self._count(reason)

    def _count(self, reason: str) -> None:
        try:
            self.on_drop(reason)
        except Exception:  # a metrics callback must not take the server down
            log.debug("on_drop failed", exc_info=True)
        if not self._warned:
            self._warned = True
            log.warning("closing /metrics connections that stall or fail (first: %s); each is "
                        "counted in vedette_metrics_connections_dropped_total, no further "
                        "warnings", reason)
