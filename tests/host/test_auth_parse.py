"""Auth log parsing: both syslog styles, every message kind, hostile lines, never-crash fuzzing."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.parsers.auth import auth_event, auth_fields
from agent.collectors.parsers.auth_context import AuthContext, privileged_users
from agent.collectors.parsers.decoders import AuthDecoder, decode_auth_file, decode_sshd_file
from agent.collectors.parsers.syslog import SyslogClock, parse_syslog

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "auth"
# 2026-11-25 12:00 local: every fixture date (Nov 21) is in 2026
REF = time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1))


def _events(name: str) -> list:
    problems: list[tuple[str, str]] = []
    clock = SyslogClock(REF)
    dec = AuthDecoder(clock, on_problem=lambda s, r: problems.append((s, r)))
    out = []
    for line in (FIXTURES / name).read_bytes().split(b"\n"):
        out.extend(dec.feed(line))
    return out, problems


def _by_action(events: list, action: str) -> list[dict]:
    return [e.fields for e in events if e.get("event.action") == action]


def test_traditional_header_and_year_inference() -> None:
    clock = SyslogClock(REF)
    h = parse_syslog("Nov 21 10:00:46 web1 sshd[812]: hello", clock)
    assert h is not None
    assert (h.hostname, h.program, h.pid, h.message) == ("web1", "sshd", 812, "hello")
    assert h.timestamp == time.mktime((2026, 11, 21, 10, 0, 46, 0, 0, -1))
    # a December line read on 2 January belongs to the previous year
    jan = SyslogClock(time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1)))
    dec = parse_syslog("Dec 31 23:59:59 h cron: x", jan)
    assert dec is not None and time.localtime(dec.timestamp).tm_year == 2026
    assert dec.pid is None and dec.program == "cron"


def test_rfc3339_header_variants() -> None:
    clock = SyslogClock(REF)
    for text, expected in (
        ("2026-11-21T10:00:46.584136+00:00 h sshd[1]: m", 1795255246.584136),
        ("2026-11-21T10:00:46Z h sshd: m", 1795255246.0),
        ("2026-11-21T11:00:46.5+01:00 h sshd[1]: m", 1795255246.5),
        ("2026-11-21T10:00:46.584136123+00:00 h sshd[1]: m", 1795255246.584136),
    ):
        h = parse_syslog(text, clock)
        assert h is not None, text
        assert abs(h.timestamp - expected) < 1e-6, text


def test_traditional_fixture_is_fully_classified() -> None:
    events, problems = _events("auth_traditional.log")
    assert problems == []
    assert len(events) == 34
    failures = [f for f in _by_action(events, "ssh_login") if f["event.outcome"] == "failure"]
    assert [(f["user.name"], f["source.ip"], f.get("vedette.auth.invalid_user", False))
            for f in failures] == [("admin", "203.0.113.9", True), ("root", "203.0.113.9", False)]
    ok = [f for f in _by_action(events, "ssh_login") if f["event.outcome"] == "success"]
    assert [(f["user.name"], f["source.ip"], f["vedette.auth.method"]) for f in ok] == [
        ("alice", "192.0.2.10", "publickey"), ("bob", "2001:db8::5", "password")]
    assert _by_action(events, "ssh_invalid_user")[0]["source.port"] == 40022
    disconnects = _by_action(events, "ssh_disconnect")
    assert len(disconnects) == 4 and all(d["vedette.auth.preauth"] for d in disconnects)
    assert _by_action(events, "ssh_max_auth_exceeded")[0]["user.name"] == "root"
    pam = _by_action(events, "pam_auth_failure")
    assert [(p["vedette.pam.service"], p.get("source.ip"), p["user.name"]) for p in pam] == [
        ("sshd", "203.0.113.9", "root"), ("sudo", None, "bob")]


def test_sudo_su_and_account_management() -> None:
    events, _ = _events("auth_traditional.log")
    sudo = _by_action(events, "sudo")
    assert [(s["user.name"], s["event.outcome"], s.get("event.reason")) for s in sudo] == [
        ("alice", "success", None), ("bob", "failure", "incorrect_password"),
        ("mallory", "failure", "not_in_sudoers")]
    assert sudo[0]["process.command_line"] == "/usr/bin/apt update"
    assert sudo[0]["user.target.name"] == "root"
    su = _by_action(events, "su")
    assert [(s["user.name"], s["user.target.name"], s["event.outcome"]) for s in su] == [
        ("alice", "root", "success"), ("bob", "root", "failure")]
    created = _by_action(events, "user_created")
    assert [(c["user.target.name"], c["user.target.id"]) for c in created] == [
        ("svc", "1002"), ("toor", "0")]
    groups = _by_action(events, "user_added_to_group")
    assert groups[0]["group.name"] == "sudo" and groups[0]["vedette.group.privileged"] is True
    assert _by_action(events, "user_uid_changed")[0]["user.target.id"] == "0"
    assert _by_action(events, "password_changed")[0]["user.name"] == "svc"
    assert _by_action(events, "user_deleted")[0]["user.target.name"] == "svc"
    assert len(_by_action(events, "group_created")) == 2
    services = {e.logsource.service for e in events}
    assert services == {"sshd", "sudo", "su", "auth", "cron"}


def test_rfc3339_fixture_and_new_openssh_program_name() -> None:
    events, problems = _events("auth_rfc3339.log")
    assert problems == []
    assert [e.get("event.action") for e in events] == [
        "ssh_login", "ssh_login", "ssh_login", "sudo", None]
    assert events[2].logsource.service == "sshd"  # sshd-session (OpenSSH >= 9.8)
    assert events[1].timestamp == 1795255247.001 - 3600
    assert "apparmor" in events[4].fields["message"]  # unclassified lines stay for keywords


def test_hostile_lines_are_sanitised_counted_and_not_misattributed() -> None:
    events, problems = _events("hostile.log")
    forged = events[0].fields
    assert forged["event.action"] == "ssh_invalid_user"
    assert forged["source.ip"] == "203.0.113.66"
    assert forged["user.name"].startswith("x: sshd[2]: Accepted")
    second = events[1].fields
    assert (second["event.outcome"], second["source.ip"], second["source.port"]) == (
        "failure", "203.0.113.66", 40023)
    assert "source.ip" not in events[2].fields and events[2].get("source.domain") == "not-an-ip"
    ansi = events[3].fields
    assert "\x1b" not in ansi["message"] and "\x00" not in ansi["message"]
    assert ansi["user.name"] == "evil\\x00x"
    assert "\ufffd" in events[4].fields["user.name"]
    reasons = sorted(r for _, r in problems)
    assert reasons == ["ansi_escapes", "control_chars", "invalid_utf8", "malformed", "malformed"]


def test_unknown_messages_are_not_classified() -> None:
    assert auth_fields("sshd", "Server listening on :: port 22.") is None
    assert auth_fields("sudo", "alice : no key value pairs here") is None
    assert auth_fields("useradd", "something else") is None


def test_decode_auth_file_uses_file_mtime_as_reference(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Dec 31 23:59:59 h sshd[1]: Failed password for root from 192.0.2.1 "
                   "port 1 ssh2\n")
    jan = time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1))
    os.utime(log, (jan, jan))
    (event,) = list(decode_auth_file(log))
    assert time.localtime(event.timestamp).tm_year == 2026
    assert event.get("log.file.path") == str(log)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_bytes_never_crash(raw: bytes) -> None:
    dec = AuthDecoder(SyslogClock(REF))
    for event in dec.feed(raw):
        assert isinstance(event.fields["message"], str)
        assert "\x00" not in event.fields["message"]


_PREFIXES = st.sampled_from([
    "Nov 21 10:00:46 h sshd[1]: ", "2026-11-21T10:00:46Z h sudo: ", "Nov  1 00:00:00 h su[3]: ",
    "Feb 29 10:00:00 h useradd[1]: ", "2026-11-21T10:00:46.1+00:00 h sshd-session[2]: "])
_BODIES = st.sampled_from([
    "Failed password for ", "Accepted publickey for ", "Invalid user ", "Connection closed by ",
    "pam_unix(sshd:auth): authentication failure; rhost=", "new user: name=", " : TTY=",
    "(to root) ", "FAILED SU (to ", " from ", " port ", " ssh2", "sshd[9]: "])


@settings(max_examples=300, deadline=None)
@given(_PREFIXES, st.lists(st.one_of(_BODIES, st.text(max_size=12)), max_size=8))
def test_fuzz_structured_lines_never_crash(prefix: str, parts: list[str]) -> None:
    event = auth_event(prefix + "".join(parts), SyslogClock(REF))
    if event is not None and "source.ip" in event.fields:
        ipaddress.ip_address(event.fields["source.ip"])


def test_auth_context_failures_before_success_and_new_sources(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.write_text("sudo:x:27:alice,bob\nusers:x:100:carol\n")
    assert privileged_users(group) == {"root", "alice", "bob"}
    history = tmp_path / "hist.json"
    ctx = AuthContext(privileged=privileged_users(group), history_file=history)
    dec = AuthDecoder(SyslogClock(REF), context=ctx)
    line = "2026-11-21T10:00:{:02d}Z h sshd[1]: {} password for {} from {} port 1 ssh2"
    for sec in range(6):
        dec.feed(line.format(sec, "Failed", "alice", "198.18.0.66").encode())
    (hit,) = dec.feed(line.format(10, "Accepted", "alice", "198.18.0.66").encode())
    assert hit.get("vedette.auth.failures_before") == 6
    assert hit.get("vedette.user.privileged") is True
    assert hit.get("vedette.auth.new_source") is None  # first login of alice: learns only
    (again,) = dec.feed(line.format(11, "Accepted", "alice", "198.18.0.66").encode())
    assert again.get("vedette.auth.failures_before") == 0
    (new,) = dec.feed(line.format(12, "Accepted", "alice", "198.18.0.99").encode())
    assert new.get("vedette.auth.new_source") is True
    (carol,) = dec.feed(line.format(13, "Accepted", "carol", "198.18.0.99").encode())
    assert carol.get("vedette.user.privileged") is None
    ctx.save()
    reloaded = AuthContext(history_file=history)
    dec2 = AuthDecoder(SyslogClock(REF), context=reloaded)
    (known,) = dec2.feed(line.format(14, "Accepted", "alice", "198.18.0.99").encode())
    assert known.get("vedette.auth.new_source") is None
    # failures older than the window do not count
    for sec in range(3):
        dec2.feed(line.format(sec, "Failed", "bob", "198.18.0.7").encode())
    (late,) = dec2.feed(
        b"2026-11-21T10:30:00Z h sshd[1]: Accepted password for bob from 198.18.0.7 port 1 ssh2"
)
    assert late.get("vedette.auth.failures_before") == 0


def test_sshd_dash_e_bare_lines(tmp_path: Path) -> None:
    log = tmp_path / "sshd.log"
    log.write_text("Server listening on 198.18.0.1 port 2222.\n"
                   "Failed password for nobody from 198.18.0.2 port 43457 ssh2\n"
                   "2026-11-21T10:00:00Z h sshd[1]: Accepted password for a from 198.18.0.3 "
                   "port 1 ssh2\n")
    os.utime(log, (REF, REF))
    events = list(decode_sshd_file(log))
    assert [(e.timestamp, e.get("event.action"), e.get("source.ip")) for e in events] == [
        (REF, None, None), (REF, "ssh_login", "198.18.0.2"),
        (1795255200.0, "ssh_login", "198.18.0.3")]
    assert all(e.logsource.service == "sshd" for e in events)
    # without bare mode the same lines are malformed
    problems: list[str] = []
    AuthDecoder(SyslogClock(REF), on_problem=lambda s, r: problems.append(r)).feed(
        b"Failed password for nobody from 198.18.0.2 port 43457 ssh2")
    assert problems == ["malformed"]


def test_very_long_line_is_cut_and_counted() -> None:
    problems: list[str] = []
    dec = AuthDecoder(SyslogClock(REF), on_problem=lambda s, r: problems.append(r))
    user = "A" * 100_000
    (event,) = dec.feed(f"Nov 21 10:00:46 h sshd[1]: Invalid user {user} from 198.18.0.1 "
                        "port 22".encode())
    assert problems == ["too_long"]
    assert len(event.get("message")) == 16 * 1024
    assert "source.ip" not in event.fields  # the trusted tail was cut off: nothing invented
