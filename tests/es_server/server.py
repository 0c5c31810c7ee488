"""A wire-faithful fake Elasticsearch on 127.0.0.1 for the unmodified official client.

What it speaks (elasticsearch.md §2-§4): ``X-Elastic-Product: Elasticsearch`` on every
response; vendor media types (``application/vnd.elasticsearch+json; compatible-with=N``) and
plain JSON/NDJSON; a ``compatible-with`` other than the server's major or major-1 is 400
``media_type_header_exception`` (what an 8.x server answers a 9.x client); gzip request bodies;
``PUT/POST [/<target>]/_bulk`` with per-item results in request order; the ILM, component/
index template and ``_data_stream`` endpoints; ``_count``/``_search``/``_doc`` enough for tests;
basic and API-key auth with per-user privileges (401 ``security_exception`` with
``WWW-Authenticate``, 403 for missing privileges); TLS with optional client certificates.

Fault injection (:class:`Faults`): down (listener closed → connection refused, open keep-alive
connections dropped), slow responses (per request or per bulk item), whole-request statuses
(429/503/413/…), statuses of ILM/template requests, per-item statuses by ``_id``, at random or
for every item into one index (with a chosen error type, e.g. ``security_exception``),
connection reset in the middle of a bulk response (after the writes were applied, as when a
real node dies after indexing), and a ``max_content_length`` → 413.

Unsure points: real ES answers 413 from its HTTP layer with an empty body — so does this fake — and
(we believe) measures the inflated body of a gzip request, as this fake does;
real ES may add fields (``ingest_took``, ``failure_store``) the agent must ignore — not sent.
``filter_path`` is implemented for bulk responses only (dotted paths, ``*`` per level).
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .cluster import Cluster, ItemError
from .endpoints import AdminEndpoints
from .filtering import filter_path

ALL_PRIVILEGES = frozenset({"write", "manage_templates", "read", "monitor"})
_WHOLE_ERRORS = {
    429: ("es_rejected_execution_exception",
          "rejected execution of coordinating operation [coordinating_and_primary_bytes=0]"),
    503: ("master_not_discovered_exception", "no master node"),
    500: ("internal_server_error", "injected"),
    502: ("bad_gateway", "injected"),
    504: ("gateway_timeout", "injected"),
    400: ("illegal_argument_exception", "injected"),
}
_ITEM_ERRORS = {
    429: ("es_rejected_execution_exception", "rejected execution of primary operation"),
    503: ("unavailable_shards_exception", "[0] primary shard is not active Timeout: [1m]"),
    500: ("internal_server_error", "injected"),
    400: ("document_parsing_exception", "[1:2] failed to parse: injected"),
    403: ("cluster_block_exception", "index blocked by: [FORBIDDEN/8/index write (api)];"),
    404: ("index_not_found_exception", "no such index"),
}


@dataclass
class Faults:
    """Mutable knobs; tests change them while the agent ships."""

    delay_seconds: float = 0.0  # before a bulk request is processed
    delay_after_seconds: float = 0.0  # after its writes were applied, before the response
    in_delay_after: threading.Event = field(default_factory=threading.Event)
    request_statuses: list[int] = field(default_factory=list)  # next bulk requests, in order
    request_status_forever: int | None = None
    item_statuses: dict[str, list[int]] = field(default_factory=dict)  # _id → statuses to return
    item_status_rate: dict[int, float] = field(default_factory=dict)  # status → probability
    reset_mid_response: int = 0  # next N bulk responses are cut off after the writes
    index_item_status: dict[str, int] = field(default_factory=dict)  # index → status, every item
    item_error_types: dict[int, tuple[str, str]] = field(default_factory=dict)  # status → error
    delay_per_doc_seconds: float = 0.0  # a bulk request takes this long per item (slow node)
    template_statuses: list[int] = field(default_factory=list)  # next ILM/template requests
    max_content_length: int = 100 * 1024 * 1024
    rng: random.Random = field(default_factory=lambda: random.Random(7))


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    items: int
    headers: dict[str, str]


class FakeElasticsearch:
    """Start with :meth:`start`; ``url`` is ``http(s)://127.0.0.1:<port>``."""

    def __init__(
        self,
        cluster: Cluster | None = None,
        tls: ssl.SSLContext | None = None,
        users: dict[str, tuple[str, frozenset[str]]] | None = None,
        api_keys: dict[str, tuple[str, frozenset[str]]] | None = None,
    ) -> None:
        self.cluster = cluster or Cluster()
        self.faults = Faults()
        self.tls = tls
        self.users = users  # None = security disabled
        self.api_keys = api_keys or {}  # id → (key, privileges)
        self.requests: list[Recorded] = []  # completed requests
        self.bulk_started = 0  # bulk requests received (including ones still being answered)
        self.port = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeElasticsearch:
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: refuse new connections and cut the open ones."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:
            conns, self._conns = set(self._conns), set()
        for conn in conns:
            _abort(conn)

    def set_down(self, down: bool) -> None:
        if down and self._httpd is not None:
            self.stop()
        elif not down and self._httpd is None:
            self.start()

    @property
    def is_down(self) -> bool:
        return self._httpd is None

    def bulk_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    # -- used by the handler
    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def authenticate(self, header: str | None) -> tuple[str, frozenset[str]] | None:
        if self.users is None:
            return "anonymous", ALL_PRIVILEGES
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except ValueError:
            return None
        ident, _, secret = decoded.partition(":")
        if scheme.lower() == "basic":
            user = self.users.get(ident)
            return (ident, user[1]) if user and user[0] == secret else None
        if scheme.lower() == "apikey":
            key = self.api_keys.get(ident)
            return (f"apikey:{ident}", key[1]) if key and key[0] == secret else None
        return None


def _abort(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) — what a dying node looks like to the client."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # close() alone waits for the handler's makefile() objects; shutdown() acts now.
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeElasticsearch

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.fake.tls is not None:
            conn = self.fake.tls.wrap_socket(conn, server_side=True,
                                             do_handshake_on_connect=False)
        self.fake.track(conn, True)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        self.fake.track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request (our own fault injection) are expected; anything
        # else is a bug of the fake and must be visible.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            traceback.print_exc()


_DECODER = json.JSONDecoder()


def _json_line(line: bytes) -> Any:
    """``json.loads`` for one NDJSON line, minus its encoding sniffing (bulk action lines are
    UTF-8 by definition): a third of the fake's time per document went there."""
    text = line.decode().strip()
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"unexpected data after the JSON value at {end}")
    return value


class _Handler(AdminEndpoints, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ plumbing

    def _dispatch(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self._vnd = "vnd.elasticsearch" in (self.headers.get("accept") or "")
        if path.endswith("/_bulk"):
            fake.bulk_started += 1
        status, _, items = self._route(fake, path, params, raw)
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.requests.append(Recorded(self.command, path, status, items, headers))

    def _send(self, status: int, body: Any, extra: dict[str, str] | None = None,
              cut: bool = False) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        if self.command == "HEAD":
            data = b""
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        if body is not None:
            major = self.server.fake.cluster.version.split(".")[0]
            ctype = (f"application/vnd.elasticsearch+json;compatible-with={major}"
                     if self._vnd else "application/json")
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            _abort(self.connection)
            self.close_connection = True
            return
        self.wfile.write(data)

    def _error(self, status: int, type_: str, reason: str,
               extra: dict[str, str] | None = None) -> tuple[int, Any, int]:
        err = {"root_cause": [{"type": type_, "reason": reason}], "type": type_, "reason": reason}
        self._send(status, {"error": err, "status": status}, extra)
        return status, None, 0

    def _check_media(self) -> tuple[int, str, str] | None:
        major = int(self.server.fake.cluster.version.split(".")[0])
        for name in ("accept", "content-type"):
            value = self.headers.get(name) or ""
            if "compatible-with=" in value:
                wanted = int(value.split("compatible-with=")[1].split(";")[0].strip())
                if wanted not in (major, major - 1):
                    return (400, "media_type_header_exception",
                            f"Invalid media-type value on headers [{name.title()}]")
        return None

    # ------------------------------------------------------------------ routing

    def _route(self, fake: FakeElasticsearch, path: str, params: dict[str, str],
               raw: bytes) -> tuple[int, Any, int]:
        media = self._check_media()
        if media:
            return self._error(*media)
        principal = fake.authenticate(self.headers.get("authorization"))
        if principal is None:
            return self._error(
                401, "security_exception",
                f"unable to authenticate user for REST request [{path}]",
                {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8", ApiKey'},
            )
        if (self.headers.get("content-encoding") or "").lower() == "gzip" and raw:
            try:
                raw = gzip.decompress(raw)  # http.max_content_length: on the inflated body
            except (OSError, EOFError) as exc:
                return self._error(400, "parse_exception", f"bad gzip body: {exc}")
        parts = [p for p in path.split("/") if p]
        is_bulk = bool(parts) and parts[-1] == "_bulk"
        if is_bulk:
            injected = self._inject_whole(fake, len(raw), raw.count(b"\n") // 2)
            if injected:
                return injected
        privs = principal[1]
        try:
            return self._handle(fake, parts, params, raw, privs, principal[0])
        except ItemError as exc:
            return self._error(exc.status, exc.type, exc.reason)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            return self._error(400, "parse_exception", f"request body is invalid: {exc}")

    def _inject_whole(self, fake: FakeElasticsearch, length: int, raw_items: int = 0
                      ) -> tuple[int, Any, int] | None:
        f = fake.faults
        if f.delay_seconds:
            time.sleep(f.delay_seconds)
        if f.delay_per_doc_seconds and raw_items:
            time.sleep(f.delay_per_doc_seconds * raw_items)
        if length > f.max_content_length:
            self._send(413, None)
            return 413, None, 0
        status = f.request_statuses.pop(0) if f.request_statuses else f.request_status_forever
        if status is not None:
            type_, reason = _WHOLE_ERRORS.get(status, ("exception", "injected"))
            return self._error(status, type_, reason)
        return None

    def _deny(self, user: str, action: str, privilege: str) -> tuple[int, Any, int]:
        return self._error(
            403, "security_exception",
            f"action [{action}] is unauthorized for user [{user}], this action is granted by "
            f"the privileges [{privilege},all]",
        )

    def _handle(self, fake: FakeElasticsearch, parts: list[str], params: dict[str, str],
                raw: bytes, privs: frozenset[str], user: str) -> tuple[int, Any, int]:
        cluster = fake.cluster
        method = self.command
        if not parts:
            self._send(200, {
                "name": "fake-node", "cluster_name": "fake", "cluster_uuid": "fakeuuid",
                "version": {"number": cluster.version, "build_flavor": "default",
                            "lucene_version": "10.0.0",
                            "minimum_wire_compatibility_version": "8.18.0"},
                "tagline": "You Know, for Search",
            })
            return 200, None, 0
        if parts[-1] == "_bulk":
            if "write" not in privs:
                return self._deny(user, "indices:data/write/bulk", "write")
            return self._bulk(fake, parts[0] if len(parts) == 2 else None, raw, params)
        head = parts[0]
        kinds = {"_component_template": "component", "_index_template": "index"}
        if head in ("_ilm", *kinds) and fake.faults.template_statuses:
            status = fake.faults.template_statuses.pop(0)
            type_, reason = _WHOLE_ERRORS.get(status, ("exception", "injected"))
            return self._error(status, type_, reason)
        if head == "_ilm" and len(parts) == 3 and parts[1] == "policy":
            return self._template(cluster, "ilm", parts[2], method, raw, privs, user)
        if head in kinds and len(parts) == 2:
            return self._template(cluster, kinds[head], parts[1], method, raw, privs, user)
        if head == "_data_stream":
            return self._data_stream(cluster, parts[1] if len(parts) > 1 else "*", method, privs,
                                     user)
        if head == "_cluster" and parts[1:] == ["health"]:
            self._send(200, {"cluster_name": "fake", "status": "green", "number_of_nodes": 1})
            return 200, None, 0
        if len(parts) >= 2 and parts[1] in ("_count", "_search", "_refresh", "_doc"):
            if "read" not in privs:
                return self._deny(user, "indices:data/read/search", "read")
            return self._read(cluster, parts, raw)
        return self._error(400, "illegal_argument_exception",
                           f"no handler found for uri [/{'/'.join(parts)}] and method [{method}]")

    # ------------------------------------------------------------------ bulk

    def _bulk(self, fake: FakeElasticsearch, default_index: str | None, raw: bytes,
              params: dict[str, str]) -> tuple[int, Any, int]:
        if raw and not raw.endswith(b"\n"):
            return self._error(400, "illegal_argument_exception",
                               "The bulk request must be terminated by a newline [\\n]")
        lines = raw.split(b"\n")[:-1]
        items: list[dict[str, Any]] = []
        started = time.perf_counter()
        errors = False
        i = 0
        while i < len(lines):
            action = _json_line(lines[i])
            (op, meta), = action.items()
            if op == "delete":
                source = None
            elif fake.cluster.raw_sources:
                source = bytes(lines[i + 1])
            else:
                source = json.loads(lines[i + 1])
            i += 2 if op != "delete" else 1
            result = self._item(fake, op, meta, source, default_index)
            errors = errors or result["status"] >= 300
            items.append({op: result})
        body = {"errors": errors, "took": int((time.perf_counter() - started) * 1000),
                "items": items}
        if fake.faults.delay_after_seconds:
            fake.faults.in_delay_after.set()
            time.sleep(fake.faults.delay_after_seconds)
            fake.faults.in_delay_after.clear()
        cut = fake.faults.reset_mid_response > 0
        if cut:
            fake.faults.reset_mid_response -= 1
        if params.get("filter_path"):
            body = filter_path(body, params["filter_path"].split(","))
        self._send(200, body, cut=cut)
        return 200, None, len(items)

    def _item(self, fake: FakeElasticsearch, op: str, meta: dict[str, Any], source: Any,
              default_index: str | None) -> dict[str, Any]:
        name = meta.get("_index", default_index)
        doc_id = meta.get("_id")
        f = fake.faults
        injected = None
        queued = f.item_statuses.get(doc_id or "")
        if queued:
            injected = queued.pop(0)
        elif name in f.index_item_status:
            injected = f.index_item_status[name]
        else:
            for status, rate in f.item_status_rate.items():
                if f.rng.random() < rate:
                    injected = status
                    break
        base = {"_index": name, "_id": doc_id}
        if injected is not None and injected >= 300:
            type_, reason = f.item_error_types.get(injected) or _ITEM_ERRORS.get(
                injected, ("exception", "injected"))
            return {**base, "status": injected, "error": {"type": type_, "reason": reason}}
        if name is None:
            return {**base, "status": 400,
                    "error": {"type": "action_request_validation_exception",
                              "reason": "Validation Failed: 1: index is missing;"}}
        try:
            return fake.cluster.write(op, name, doc_id, source, meta.get("version"),
                                      meta.get("version_type"))
        except ItemError as exc:
            return {**base, "status": exc.status, "error": exc.body(name)}


def tls_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx

