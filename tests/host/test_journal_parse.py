"""journalctl -o json entries → auth events; bad entries counted by reason."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.parsers.decoders import JournalDecoder, decode_journal_file
from agent.events import Event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "auth"


def test_journal_fixture() -> None:
    problems: list[tuple[str, str]] = []
    events = list(decode_journal_file(FIXTURES / "journal.jsonl",
                                      on_problem=lambda s, r: problems.append((s, r))))
    assert sorted(r for _, r in problems) == [
        "bad_json", "bad_json", "bad_message", "bad_timestamp", "forged", "invalid_utf8"]
    assert len(events) == 4
    first = events[0].fields
    assert (first["event.action"], first["event.outcome"], first["source.ip"]) == (
        "ssh_login", "failure", "203.0.113.30")
    assert events[0].timestamp == 1795255246.584136
    assert first["process.pid"] == 812 and first["log.syslog.facility.code"] == 4
    assert events[1].get("event.action") == "ssh_invalid_user"
    assert "\ufffd" in events[1].get("user.name")
    assert events[2].logsource.service == "sudo" and events[2].get("user.name") == "alice"
    forged = events[3]
    assert forged.logsource.category == "log_forgery"
    assert forged.fields["event.action"] == "forged_entry"
    assert "source.ip" not in forged.fields and "user.name" not in forged.fields
    assert (forged.fields["process.executable"], forged.fields["user.id"],
            forged.fields["process.pid"]) == ("/usr/bin/logger", "1000", 4242)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["MESSAGE", "__REALTIME_TIMESTAMP", "_PID",
                                        "SYSLOG_IDENTIFIER", "_HOSTNAME", "_COMM"]),
                       st.one_of(st.text(max_size=20), st.integers(), st.none(),
                                 st.lists(st.integers(-5, 300), max_size=5))))
def test_fuzz_entries_never_crash(entry: dict) -> None:
    JournalDecoder().feed(json.dumps(entry).encode())


SSHD_TRUSTED = {"_UID": "0", "_EXE": "/usr/sbin/sshd", "_COMM": "sshd",
                "_SYSTEMD_UNIT": "ssh.service"}
FAILED = "Failed password for root from 198.18.7.7 port 22 ssh2"


def _entry(message: str = FAILED, **fields: str) -> bytes:
    entry = {"__REALTIME_TIMESTAMP": "1795255246584136", "_HOSTNAME": "web3",
             "SYSLOG_IDENTIFIER": "sshd", "SYSLOG_PID": "812", "_PID": "812",
             "MESSAGE": message}
    entry.update(fields)
    return json.dumps({k: v for k, v in entry.items() if v != "-"}).encode()


def _one(raw: bytes) -> Event:
    events = JournalDecoder().feed(raw)
    assert len(events) == 1
    return events[0]


def test_genuine_sshd_entries_count_as_logins() -> None:
    for extra in (SSHD_TRUSTED,
                  {"_UID": "0", "_EXE": "/usr/lib/openssh/sshd-session", "_COMM": "sshd-session"},
                  {"_UID": "0", "_EXE": "-", "_COMM": "sshd"},  # exe unreadable: comm decides
                  {"_UID": "0", "_SYSTEMD_UNIT": "ssh@3-198.18.0.1:22-198.18.7.7:5.service"}):
        event = _one(_entry(**extra))
        assert (event.get("event.action"), event.get("source.ip")) == ("ssh_login", "198.18.7.7")


def test_logger_forging_sshd_is_a_forgery_event_not_a_login() -> None:
    """`logger -p authpriv.notice -t sshd 'Failed password for root from …'` by uid 1000."""
    forgeries = [
        {"_UID": "1000", "_EXE": "/usr/bin/logger", "_COMM": "logger", "_PID": "4242"},
        {"_UID": "1000", "_EXE": "/usr/sbin/sshd", "_COMM": "sshd"},  # not root
        {"_UID": "0", "_EXE": "/usr/bin/logger", "_COMM": "sshd"},  # root, but not sshd
        {"_UID": "0", "_EXE": "/tmp/sshd", "_COMM": "sshd"},  # a copy outside system dirs
        {},  # nothing journald vouches for (SYSLOG_* only)
    ]
    for extra in forgeries:
        event = _one(_entry(**extra))
        assert event.logsource.category == "log_forgery", extra
        assert event.get("event.action") == "forged_entry"
        assert event.get("vedette.log.claimed_program") == "sshd"
        assert event.get("vedette.log.claimed_action") == "ssh_login"
        assert "source.ip" not in event.fields and "user.name" not in event.fields
    assert _one(_entry(_UID="1000", _PID="4242")).get("process.pid") == 4242  # not SYSLOG_PID


def test_forged_sudo_and_account_lines() -> None:
    sudo = "root : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh"
    genuine = _one(_entry(sudo, SYSLOG_IDENTIFIER="sudo", _UID="1000", _EXE="/usr/bin/sudo"))
    assert genuine.logsource.service == "sudo"
    for extra in ({"_EXE": "/home/u/bin/sudo"}, {"_COMM": "sudo"}):  # comm alone: settable
        forged = _one(_entry(sudo, SYSLOG_IDENTIFIER="sudo", _UID="1000", **extra))
        assert forged.logsource.category == "log_forgery"
    useradd = "new user: name=evil, UID=0, GID=0, home=/root, shell=/bin/sh"
    forged = _one(_entry(useradd, SYSLOG_IDENTIFIER="useradd", _UID="1000",
                         _EXE="/usr/bin/logger"))
    assert forged.get("vedette.log.claimed_action") == "user_created"
    # an unknown identifier with an auth message must at least be that program
    pam = "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh " \
          "ruser= rhost=198.18.7.7  user=root"
    assert _one(_entry(pam, SYSLOG_IDENTIFIER="myapp", _UID="1000", _EXE="/usr/bin/logger")
                ).logsource.category == "log_forgery"
    # programs Vedette does not classify keep their own identifiers
    plain = _one(_entry("hello", SYSLOG_IDENTIFIER="myapp", _UID="1000", _EXE="/usr/bin/python3"))
    assert plain.logsource.service == "auth" and plain.get("event.action") is None


def test_implausible_journal_timestamps_are_refused_and_counted() -> None:
    problems: list[str] = []
    decoder = JournalDecoder(on_problem=lambda s, r: problems.append(r))
    entry = json.loads(_entry(**SSHD_TRUSTED))
    entry["__REALTIME_TIMESTAMP"] = str(2 ** 58 * 10 ** 6)
    assert decoder.feed(json.dumps(entry).encode()) == []
    assert problems == ["bad_timestamp"]


def test_root_writers_and_system_helpers_with_other_identifiers_are_trusted() -> None:
    pam = "pam_unix(polkit-1:auth): authentication failure; logname= uid=1000 euid=0 tty= " \
          "ruser=alice rhost=  user=alice"
    helper = _one(_entry(pam, SYSLOG_IDENTIFIER="polkit-agent-helper-1", _UID="1000",
                         _EXE="/usr/lib/polkit-1/polkit-agent-helper-1"))
    assert helper.get("event.action") == "pam_auth_failure"
    adduser = _one(_entry("new group: name=svc, GID=1001", SYSLOG_IDENTIFIER="adduser",
                          _UID="0", _EXE="/usr/bin/perl", _COMM="adduser"))
    assert adduser.get("event.action") == "group_created"


def test_a_user_writer_named_after_itself_cannot_forge_classified_messages() -> None:
    # `logger -t logger …` or a python3 script logging as "python3": the executable is the
    # program the identifier names, but it writes whatever its (unprivileged) user wants
    pam = "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh " \
          "ruser= rhost=198.18.7.7  user=root"
    for ident, exe in (("logger", "/usr/bin/logger"), ("python3", "/usr/bin/python3"),
                       ("perl", "/usr/bin/perl")):
        for msg in (pam, "new user: name=x, UID=0, GID=0, home=/, shell=/bin/sh"):
            fields = _one(_entry(msg, SYSLOG_IDENTIFIER=ident, _UID="1000", _EXE=exe)).fields
            assert fields["event.action"] == "forged_entry", (ident, msg)
            assert "source.ip" not in fields
