"""nginx / Apache access log lines (combined and common formats) → ``vedette/web_access`` events.

``common``:   ``%h %l %u [%t] "%r" %>s %b``
``combined``: ``common`` plus ``"%{Referer}i" "%{User-Agent}i"``; anything after it (nginx's
``"$http_x_forwarded_for"``, timings) is ignored. Both servers escape ``"`` and control bytes in
the quoted parts, so a quoted string is ``"`` … ``"`` with backslash escapes inside.

Fields: ``source.ip`` (``source.domain`` when ``%h`` is a resolved name), ``user.name``,
``http.request.method``, ``url.original``, ``url.path``, ``url.query``, ``http.version``,
``http.response.status_code``, ``http.response.body.bytes``, ``http.request.referrer``,
``user_agent.original``, and ``vedette.url.decoded``: the request target percent-decoded twice
(double encoding is a classic filter bypass) and with ``+`` as space, for traversal/SQLi/XSS
rules. A line that does not match is ``None`` (the caller counts it as malformed); a request
line that is not ``METHOD target HTTP/x`` (TLS bytes sent to a plain port, ``-``) is kept in
``url.original`` with no method.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

from agent.events import Event, LogSource

WEB_ACCESS = LogSource("vedette", "web_access")

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r"(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+|\"[^\"]*\") \[(?P<time>[^\]]{20,40})\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}|-) (?P<bytes>\d+|-)"
    + r"(?: " + _QUOTED.replace("(", "(?P<referrer>", 1)
    + r" " + _QUOTED.replace("(", "(?P<agent>", 1) + r")?"
    + r"(?P<rest>\s.*)?",
    re.DOTALL,
)
_METHOD = re.compile(r"[A-Z][A-Z_-]{0,19}")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_TIME = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})")


def parse_clf_time(text: str) -> float | None:
    """``21/Nov/2026:10:00:46 +0000`` → epoch seconds."""
    m = _TIME.fullmatch(text)
    if m is None:
        return None
    month = _MONTHS.get(m[2])
    if month is None:
        return None
    try:
        return datetime.strptime(
            f"{m[3]}-{month:02d}-{m[1]} {m[4]}:{m[5]}:{m[6]} {m[7]}", "%Y-%m-%d %H:%M:%S %z"
        ).timestamp()
    except ValueError:
        return None


def _decode(target: str) -> str:
    once = unquote_plus(target, errors="replace")
    return unquote(once, errors="replace") if "%" in once else once


def web_fields(text: str) -> tuple[float, dict[str, Any]] | None:
    """(timestamp, fields) of one sanitised access-log line, or ``None`` when malformed."""
    m = _LINE.fullmatch(text)
    if m is None:
        return None
    ts = parse_clf_time(m["time"])
    if ts is None:
        return None
    fields: dict[str, Any] = {"message": text, "event.dataset": "web.access",
                              "event.category": "web"}
    host = m["host"]
    try:
        fields["source.ip"] = str(ipaddress.ip_address(host))
    except ValueError:
        fields["source.domain"] = host[:255]
    user = m["user"].strip('"')
    if user and user != "-":
        fields["user.name"] = user
    request = m["request"]
    parts = request.split(" ")
    if len(parts) == 3 and _METHOD.fullmatch(parts[0]) and parts[2].startswith("HTTP/"):
        fields["http.request.method"] = parts[0]
        target = parts[1]
        fields["http.version"] = parts[2][5:]
    elif len(parts) == 2 and _METHOD.fullmatch(parts[0]) and parts[1].startswith("/"):
        fields["http.request.method"] = parts[0]  # HTTP/0.9 style
        target = parts[1]
    else:
        target = request
    fields["url.original"] = target
    if target.startswith("/") or "://" in target:
        path, sep, query = target.partition("?")
        if "://" in path:  # absolute-form (proxy requests)
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        fields["url.path"] = path
        if sep:
            fields["url.query"] = query
    fields["vedette.url.decoded"] = _decode(target)
    status = m["status"]
    if status != "-":
        code = int(status)
        fields["http.response.status_code"] = code
        fields["event.outcome"] = "failure" if code >= 400 else "success"
    size = m["bytes"]
    fields["http.response.body.bytes"] = int(size) if size != "-" else 0
    referrer = m["referrer"]
    if referrer and referrer != "-":
        fields["http.request.referrer"] = referrer
    agent = m["agent"]
    if agent and agent != "-":
        fields["user_agent.original"] = agent
    return ts, fields


def web_event(text: str, *, path: str | None = None) -> Event | None:
    parsed = web_fields(text)
    if parsed is None:
        return None
    ts, fields = parsed
    if path is not None:
        fields["log.file.path"] = path
    return Event(ts, WEB_ACCESS, fields)
