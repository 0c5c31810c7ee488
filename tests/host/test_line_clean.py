"""The line sanitiser removes only complete escape sequences, never trusted text after them."""

from __future__ import annotations

from agent.collectors.parsers.auth import sudo_fields
from agent.collectors.parsers.decoders import AuthDecoder
from agent.collectors.parsers.line_clean import ANSI_ESCAPES, CONTROL_CHARS, clean_line
from agent.collectors.parsers.syslog import SyslogClock

HEAD = b"Nov 21 10:00:46 web1 sshd[812]: "
REAL = b" from 203.0.113.66 port 40022 ssh2"


def _sshd(user: bytes) -> dict[str, object]:
    decoder = AuthDecoder(SyslogClock(reference=1795255246.0))
    events = decoder.feed(HEAD + b"Failed password for " + user + REAL)
    assert len(events) == 1
    return events[0].fields


def test_unterminated_osc_in_a_user_name_cannot_frame_another_address() -> None:
    fields = _sshd(b"root from 198.18.7.7 port 22\x1b]")
    assert (fields["event.action"], fields["event.outcome"]) == ("ssh_login", "failure")
    assert (fields["source.ip"], fields["source.port"]) == ("203.0.113.66", 40022)
    assert fields["user.name"] == "root from 198.18.7.7 port 22\\x1b]"


def test_csi_start_in_a_user_name_cannot_hide_the_attempt() -> None:
    fields = _sshd(b"admin\x1b[")
    assert (fields["event.action"], fields["source.ip"]) == ("ssh_login", "203.0.113.66")
    assert fields["user.name"] == "admin\\x1b["
    for user in (b"admin\x1b", b"admin\x1bP", b"admin\x1b_", b"admin\x1b[1;2", b"x\x1b]0;t"):
        assert _sshd(user)["source.ip"] == "203.0.113.66", user


def test_complete_sequences_are_still_removed() -> None:
    text, problems = clean_line(b"a\x1b[31mb\x1b[0mc\x1b]0;title\x07d\x1b]8;;x\x1b\\e\x1bMf")
    assert (text, problems) == ("abcdef", frozenset({ANSI_ESCAPES}))
    # a terminated OSC inside the user name goes, the real suffix stays
    assert _sshd(b"root from 198.18.7.7 port 22\x1b]0;x\x07")["source.ip"] == "203.0.113.66"


def test_unterminated_sequences_stay_visible() -> None:
    text, problems = clean_line("user\x1b]rest of the line")
    assert text == "user\\x1b]rest of the line" and problems == frozenset({CONTROL_CHARS})
    text, _ = clean_line("user\x1b[ from x")
    assert text == "user\\x1b[ from x"


def test_an_osc_cannot_span_trusted_text_between_two_attacker_fields() -> None:
    # sudo writes its own `` ; USER=root ; COMMAND=`` between the user's PWD and command line:
    # an OSC opened in the directory name and closed in an argument must not delete it
    raw = ("alice : TTY=pts/0 ; PWD=/tmp/x\x1b] ; USER=root ; COMMAND=/bin/sh -c id \x07"
           " ; USER=nobody ; COMMAND=/bin/true")
    fields = sudo_fields(clean_line(raw).text)
    assert fields is not None
    assert fields.get("user.target.name") != "nobody"
    assert "/bin/sh -c id" in fields["process.command_line"]
