"""Web access log parsing: combined/common, decoding, malformed lines counted, fuzzing."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.parsers.decoders import decode_web_file
from agent.collectors.parsers.web import parse_clf_time, web_event, web_fields

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "web"


def test_combined_fixture() -> None:
    problems: list[tuple[str, str]] = []
    events = list(decode_web_file(FIXTURES / "nginx_combined.log",
                                  on_problem=lambda s, r: problems.append((s, r))))
    assert sorted(problems) == [("web_log", "malformed"), ("web_log", "malformed")]
    assert len(events) == 10
    first = events[0].fields
    assert first["http.request.method"] == "GET" and first["url.path"] == "/"
    assert first["http.response.status_code"] == 200 and first["http.version"] == "1.1"
    assert first["user_agent.original"].startswith("Mozilla/5.0")
    assert events[0].timestamp == 1795255246.0
    assert events[1].get("http.request.referrer") == "https://example.org/"
    assert events[3].get("vedette.url.decoded") == "/cgi-bin/../../etc/passwd"
    sqli = events[4].fields
    assert sqli["url.query"].startswith("id=1%27")
    assert "' UNION SELECT user,password FROM users--" in sqli["vedette.url.decoded"]
    assert "<script>" in events[5].get("vedette.url.decoded")
    tls = events[7].fields
    assert "http.request.method" not in tls and tls["url.original"].startswith("\\x16")
    assert "url.path" not in events[8].fields
    assert events[9].get("url.path") == "/proxy" and events[9].get("source.ip") == "::1"
    assert {e.logsource for e in events} == {("vedette", "web_access", None)}


def test_common_fixture_with_user_and_dash_bytes() -> None:
    events = list(decode_web_file(FIXTURES / "apache_common.log"))
    assert [e.get("user.name") for e in events] == ["frank", None, None]
    assert events[0].timestamp == 1795255200.0  # 11:00 +0100 == 10:00Z
    assert events[1].get("http.response.body.bytes") == 0
    assert events[1].get("event.outcome") == "failure"
    assert events[2].get("url.path") == '/a\\"b'
    assert "user_agent.original" not in events[0].fields


def test_time_parsing_rejects_nonsense() -> None:
    assert parse_clf_time("21/Nov/2026:10:00:46 +0000") == 1795255246.0
    assert parse_clf_time("32/Nov/2026:10:00:46 +0000") is None
    assert parse_clf_time("21/Foo/2026:10:00:46 +0000") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_never_crash(text: str) -> None:
    web_event(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_fuzz_inside_a_valid_frame(request: str, agent: str) -> None:
    line = (f'192.0.2.1 - - [21/Nov/2026:10:00:46 +0000] "{request}" 200 5 "-" "{agent}"')
    event = web_event(line)
    if event is not None:
        assert event.get("source.ip") == "192.0.2.1"


SQLMAP_UA = "sqlmap/1.7.2#stable (https://sqlmap.org)"


def _escaped_line(path: str, client: str = "198.18.7.7") -> bytes:
    return (f'{client} - - [21/Nov/2026:10:00:46 +0000] "GET {path} HTTP/1.1" 404 153 "-" '
            f'"{SQLMAP_UA}"').encode()


def test_a_line_cut_at_16k_is_still_a_request_from_its_client(tmp_path: Path) -> None:
    """sqlmap with ~4,100 raw 0x80 bytes in the path: nginx writes each as \\x80 (16.5 KB)."""
    line = _escaped_line("/item.php?id=1%27%20AND%201=1--" + "\\x80" * 4100)
    assert len(line) > 16 * 1024
    log = tmp_path / "access.log"
    log.write_bytes(line + b"\n" + _escaped_line("/ok") + b"\n")
    problems: list[str] = []
    events = list(decode_web_file(log, on_problem=lambda s, r: problems.append(r)))
    assert problems == ["too_long"]  # counted, but not lost
    cut, normal = events[0].fields, events[1].fields
    assert (cut["source.ip"], cut["http.request.method"]) == ("198.18.7.7", "GET")
    assert cut["vedette.web.truncated"] is True and cut["vedette.web.line_bytes"] == len(line)
    assert cut["url.query"].startswith("id=1%27") and "1=1--" in cut["vedette.url.decoded"]
    assert "vedette.web.truncated" not in normal and normal["user_agent.original"] == SQLMAP_UA


def test_an_oversized_unparseable_line_still_names_its_client(tmp_path: Path) -> None:
    line = b'198.18.7.8 - - [21/Nov/2026:10:00:46 +0000] ' + b"A" * 20000
    log = tmp_path / "access.log"
    log.write_bytes(line + b"\n" + b"x" * 20000 + b"\n")
    problems: list[str] = []
    events = list(decode_web_file(log, on_problem=lambda s, r: problems.append(r)))
    assert sorted(problems) == ["malformed", "too_long", "too_long"]
    assert [(e.get("source.ip"), e.get("event.action")) for e in events] == [
        ("198.18.7.8", "unparsed")]
    assert events[0].get("vedette.web.line_bytes") == len(line)


def test_a_basic_auth_user_name_with_spaces_cannot_hide_the_request() -> None:
    # nginx and Apache escape quotes and control bytes in %u, not spaces or brackets
    for user in ("a b", "x [21/Nov/2030:10:00:46 +0000]", "x [AAAAAAAAAAAA", "-"):
        line = (f'198.18.5.5 - {user} [21/Nov/2026:10:00:46 +0000] '
                '"GET /index.php?id=1%27%20OR%201=1-- HTTP/1.1" 200 12 "-" "sqlmap/1.7"')
        parsed = web_fields(line)
        assert parsed is not None, user
        ts, fields = parsed
        assert fields["source.ip"] == "198.18.5.5"
        assert fields["url.query"] == "id=1%27%20OR%201=1--"
        assert fields.get("user.name", "-") == user
        assert ts == web_fields(line.replace(f" {user} ", " - "))[0]  # type: ignore[index]
