"""auditd decoding: serial join, one event per record, hex fields, syscall names, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.parsers.audit import AuditJoiner, parse_record
from agent.collectors.parsers.decoders import AuditDecoder, decode_audit_file
from agent.detection import Engine, load_rules

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "auditd"


def test_fixture_join_and_raw_keys() -> None:
    problems: list[tuple[str, str]] = []
    events = list(decode_audit_file(FIXTURES / "audit.log",
                                    on_problem=lambda s, r: problems.append((s, r))))
    assert sorted(problems) == [("auditd", "malformed"), ("auditd", "malformed")]
    types = [e.get("type") for e in events]
    assert types == ["SYSCALL", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE", "USER_AUTH",
                     "ADD_USER", "SYSCALL"]
    syscall, execve = events[0].fields, events[1].fields
    assert syscall["SYSCALL"] == "execve" and syscall["euid"] == "33"
    assert syscall["a0"] == "55e7a3c1e2a0"  # register values are not hex-decoded
    assert syscall["key"] == "exec" and syscall["exe"] == "/usr/bin/dash"
    assert execve["a2"] == "cat /etc/passwd | nc"
    assert execve["process.command_line"] == "sh -c cat /etc/passwd | nc"
    assert execve["process.executable"] == "/usr/bin/dash"
    assert execve["process.working_directory"] == "/var/www/html"
    assert events[5].get("proctitle") == "sh -c cat /etc/passwd | nc"
    assert all(e.get("auditd.serial") == 4501 for e in events[:6])
    auth = events[6].fields
    assert (auth["acct"], auth["res"], auth["UID"], auth["AUID"]) == (
        "root", "failed", "root", "unset")
    assert auth["event.outcome"] == "failure" and auth["user.name"] == "root"
    assert events[8].get("SYSCALL") == "finit_module"
    assert all(e.logsource == ("linux", None, "auditd") for e in events)
    assert events[0].timestamp == 1795255246.123


def test_interleaved_serials_and_pending_limit() -> None:
    joiner = AuditJoiner(max_pending=3)
    rec = parse_record
    done = []
    done += joiner.feed(rec('type=SYSCALL msg=audit(1.0:1): syscall=59 arch=c000003e'))
    done += joiner.feed(rec('type=SYSCALL msg=audit(1.0:2): syscall=59 arch=c000003e'))
    done += joiner.feed(rec('type=EXECVE msg=audit(1.0:1): argc=1 a0="a"'))
    assert done == []
    done += joiner.feed(rec('type=EOE msg=audit(1.0:1): '))
    assert [[r.type for r in g] for g in done] == [["SYSCALL", "EXECVE"]]
    # a user-space message is a complete event on its own
    assert [g[0].serial for g in joiner.feed(rec('type=USER_LOGIN msg=audit(1.0:3): res=no'))
            ] == [3]
    # serial 2 never gets EOE: it is released once max_pending later records arrived
    released = []
    for n in range(4, 7):
        released += joiner.feed(rec(f'type=PATH msg=audit(1.0:{n}): name="/x"'))
    assert [g[0].serial for g in released] == [2]
    assert [g[0].serial for g in joiner.flush()] == [4, 5, 6]


def test_enriched_separator_in_raw_bytes() -> None:
    dec = AuditDecoder()
    dec.feed(b'type=SYSCALL msg=audit(5.5:9): arch=c000003e syscall=59 success=no '
             b'exe="/x"\x1dARCH=x86_64 SYSCALL=execve AUID="alice"')
    (event,) = dec.flush()
    assert event.get("AUID") == "alice" and event.get("event.outcome") == "failure"
    assert "\\x1d" not in event.get("message")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_never_crash(raw: bytes) -> None:
    dec = AuditDecoder()
    dec.feed(b"type=SYSCALL msg=audit(1.0:1): " + raw)
    dec.feed(raw)
    dec.flush()


SIGMAHQ_AUDITD = Path(__file__).resolve().parents[3] / "shared" / "sigmahq" / "rules" / "linux" \
    / "auditd"


def test_sigmahq_auditd_rules_fire_on_decoded_records() -> None:
    if not SIGMAHQ_AUDITD.is_dir():
        pytest.skip("SigmaHQ rules not available")
    report = load_rules([SIGMAHQ_AUDITD])
    assert not report.errors
    engine = Engine(report.ruleset)
    opened = set()
    for event in decode_audit_file(FIXTURES / "audit.log"):
        for alert in engine.advance(event.timestamp) + engine.process(event):
            opened.add(alert.rule.title)
    assert {"Webshell Remote Command Execution", "Creation Of An User Account"} <= opened


def _user_auth(acct: str, hostname: str = "203.0.113.9") -> dict[str, object]:
    line = ("type=USER_AUTH msg=audit(1795255247.000:4502): pid=1400 uid=0 auid=4294967295 "
            "ses=4294967295 subj=unconfined msg='op=PAM:authentication grantors=? "
            f"acct={acct} exe=\"/usr/sbin/sshd\" hostname={hostname} addr=203.0.113.9 "
            "terminal=ssh res=failed'\x1dUID=\"root\" AUID=\"unset\"")
    events = AuditDecoder().feed(line.encode())
    assert len(events) == 1
    return events[0].fields


def test_quote_injection_in_acct_cannot_forge_the_address_or_the_result() -> None:
    """libaudit does not encode ' in acct: it must not close msg='…' early."""
    fields = _user_auth("\"x'addr='198.18.7.7'\"")
    assert fields["acct"] == "x'addr='198.18.7.7'" and fields["user.name"] == fields["acct"]
    assert (fields["addr"], fields["source.address"]) == ("203.0.113.9", "203.0.113.9")
    assert (fields["res"], fields["event.outcome"]) == ("failed", "failure")
    fields = _user_auth("\"x'res=success'\"")
    assert fields["res"] == "failed" and fields["event.outcome"] == "failure"


def test_text_injected_before_the_trailing_fields_does_not_override_them() -> None:
    # an unencoded hostname with spaces (a hostile PTR name) comes before addr/terminal/res
    fields = _user_auth('"alice"', "evil addr=198.18.7.7 res=success UID=\"alice\"")
    assert fields["source.address"] == "203.0.113.9" and fields["event.outcome"] == "failure"
    assert fields["UID"] == "root"


def test_hex_values_are_decoded_and_sanitised() -> None:
    acct = "726F6F740A1B5D0041"  # root\n ESC ] NUL A
    fields = _user_auth(acct)
    assert fields["acct"] == "root\\x0a\\x1b]\\x00A"
    line = 'type=EXECVE msg=audit(1.0:9): argc=2 a0="sh" a1=6C730A1B5B326A'
    record = parse_record(line)
    assert record is not None and record.fields["a1"] == "ls\\x0a"  # the complete CSI is removed
