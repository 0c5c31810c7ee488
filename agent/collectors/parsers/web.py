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

**Lines cut by the sanitiser** (longer than 16 KB: nginx writes each non-printable byte of a
request as ``\\xHH``, so 4,100 such bytes make a 16.5 KB line) are not dropped: the client
(``%h``, the first field, written by the server) and the time come before anything the client
sends, so a cut request line is still a request from that client, with what is left of its
target, flagged ``vedette.web.truncated: true``. A cut line in which even the request cannot be
found, but the client and time can, becomes ``event.action: unparsed`` with the same flag.
Either way ``vedette.web.line_bytes`` is the line's real length; rule
``web_oversized_log_line`` alerts on them (an oversized request is a scanner or an evasion
attempt in itself).
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
# %u (the Basic-auth user name) is the client's: the servers escape quotes and control bytes
# in it but not spaces or brackets, so it is whatever comes before the first `` [time] "``
# (it cannot contain the ``"``), and the time must have the exact CLF shape.
_CLF_TIME = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"
_LINE = re.compile(
    r"(?P<host>\S+) (?P<ident>\S+) (?P<user>.*?) \[(?P<time>" + _CLF_TIME + r")\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}|-) (?P<bytes>\d+|-)"
    + r"(?: " + _QUOTED.replace("(", "(?P<referrer>", 1)
    + r" " + _QUOTED.replace("(", "(?P<agent>", 1) + r")?"
    + r"(?P<rest>\s.*)?",
    re.DOTALL,
)
_PREFIX = (r"(?P<host>\S+) (?P<ident>\S+) (?P<user>.*?) "
           r"\[(?P<time>" + _CLF_TIME + r")\] ")
# a cut line: the request line runs to the end (no closing quote), perhaps in mid-escape
_CUT_REQUEST = re.compile(_PREFIX + r'"(?P<request>(?:[^"\\]|\\.)*)\\?', re.DOTALL)
_CUT_CLIENT = re.compile(_PREFIX, re.DOTALL)
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


def web_fields(text: str, *, truncated: bool = False, line_bytes: int | None = None
               ) -> tuple[float, dict[str, Any]] | None:
    """(timestamp, fields) of one sanitised access-log line, or ``None`` when malformed.

    ``truncated``: the sanitiser cut the line (``line_bytes`` long before that); a line that
    no longer matches is then read as far as it goes (module docstring).
    """
    m = _LINE.fullmatch(text)
    if m is None and truncated:
        m = _CUT_REQUEST.fullmatch(text)
        if m is None:
            m = _CUT_CLIENT.match(text)
    if m is None:
        return None
    ts = parse_clf_time(m["time"])
    if ts is None:
        return None
    fields: dict[str, Any] = {"message": text, "event.dataset": "web.access",
                              "event.category": "web"}
    if truncated:
        fields["vedette.web.truncated"] = True
        if line_bytes is not None:
            fields["vedette.web.line_bytes"] = line_bytes
    host = m["host"]
    try:
        fields["source.ip"] = str(ipaddress.ip_address(host))
    except ValueError:
        fields["source.domain"] = host[:255]
    user = m["user"].strip('"')
    if user and user != "-":
        fields["user.name"] = user
    groups = m.groupdict()
    request = groups.get("request")
    if request is None:
        fields["event.action"] = "unparsed"
        return ts, fields
    _request_fields(fields, request)
    status = groups.get("status")
    if status and status != "-":
        code = int(status)
        fields["http.response.status_code"] = code
        fields["event.outcome"] = "failure" if code >= 400 else "success"
    size = groups.get("bytes")
    if size is not None:
        fields["http.response.body.bytes"] = int(size) if size != "-" else 0
    referrer = groups.get("referrer")
    if referrer and referrer != "-":
        fields["http.request.referrer"] = referrer
    agent = groups.get("agent")
    if agent and agent != "-":
        fields["user_agent.original"] = agent
    return ts, fields


def _request_fields(fields: dict[str, Any], request: str) -> None:
    # the server logs the request line as received: spaces inside the target are the client's
    method, _, rest = request.partition(" ")
    head, _, version = rest.rpartition(" ")
    if _METHOD.fullmatch(method) and head and version.startswith("HTTP/"):
        fields["http.request.method"] = method
        target = head
        fields["http.version"] = version[5:]
    elif _METHOD.fullmatch(method) and rest.startswith("/"):
        fields["http.request.method"] = method  # HTTP/0.9 style (or a cut request line)
        target = rest
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


def web_event(text: str, *, path: str | None = None, truncated: bool = False,
              line_bytes: int | None = None) -> Event | None:
    parsed = web_fields(text, truncated=truncated, line_bytes=line_bytes)
    if parsed is None:
        return None
    ts, fields = parsed
    if path is not None:
        fields["log.file.path"] = path
    return Event(ts, WEB_ACCESS, fields)
