"""`vedette replay --log`: every line accounted for (parsed / unclassified / malformed, like
fail2ban-regex), `--show-unparsed N`, and binary input refused with what it is."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from agent.cli import main
from agent.offline.logs import LineAccount, binary_reason, log_events

AUTH = (
    b"Dec  6 10:00:00 web1 sshd[12]: Failed password for root from 198.18.0.5 port 22 ssh2\n"
    b"Dec  6 10:00:01 web1 cron[123]: (root) CMD (true)\n"
    b"\n"
    b"garbage without a syslog header\n"
    b"Dec  6 10:00:02 web1 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id\n"
    b"also garbage\n"
)


def test_every_line_is_parsed_unclassified_or_malformed(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(AUTH)
    account = LineAccount(keep_unparsed=2)
    events = list(log_events("auth", log, account))
    assert (account.lines, account.parsed, account.unclassified, account.malformed) == \
        (6, 2, 2, 2)
    assert len(events) == 3  # the cron line is an event too (keyword rules see it)
    assert account.unparsed == [(2, "unclassified", "Dec  6 10:00:01 web1 cron[123]: (root) "
                                 "CMD (true)"), (3, "unclassified", "")]
    assert account.summary() == "6 lines: 2 parsed, 2 unclassified, 2 malformed"


def test_auditd_records_held_in_groups_count_as_parsed(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(
        b'type=SYSCALL msg=audit(1764000000.123:42): arch=c000003e syscall=59 success=yes '
        b'exit=0 pid=100 uid=0 comm="id" exe="/usr/bin/id"\n'
        b'type=EOE msg=audit(1764000000.123:42):\n'
        b'no audit record here\n')
    account = LineAccount()
    list(log_events("auditd", log, account))
    assert (account.parsed, account.malformed) == (2, 1)


def test_the_command_prints_counts_and_unparsed_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(AUTH)
    assert main(["replay", str(log), "--log", "auth", "--show-unparsed", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("6 lines: 2 parsed, 2 unclassified, 2 malformed; 3 events, ")
    assert out[1:4] == [f"  {log}:2: unclassified: Dec  6 10:00:01 web1 cron[123]: (root) "
                        "CMD (true)", f"  {log}:3: unclassified: ",
                        f"  {log}:4: malformed: garbage without a syslog header"]


def test_a_file_of_another_kind_gets_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text("garbage\nmore garbage\n")
    assert main(["replay", str(log), "--log", "nginx"]) == 0
    out = capsys.readouterr().out
    assert "2 lines: 0 parsed, 0 unclassified, 2 malformed" in out
    assert f"warning: no line of {log} parsed as --log nginx" in out


@pytest.mark.parametrize(("content", "what"), [
    (gzip.compress(AUTH), "binary data, gzip-compressed: decompress it first"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\x00" * 16, "binary data, a pcap capture"),
    (b"LPKSHHRH" + b"\x00" * 64, "binary data, a binary systemd journal file"),
    (b"ELF\x00\x01\x02", "binary data (NUL bytes), not a text log"),
])
def test_binary_input_says_what_it_is_instead_of_zero_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, what: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    assert binary_reason(path) is not None and binary_reason(path).startswith(what)
    assert main(["replay", str(path), "--log", "auth"]) == 1
    captured = capsys.readouterr()
    assert f"vedette replay: {path}: {what}" in captured.err
    assert "0 events" not in captured.out


def test_a_log_with_the_nul_block_of_an_unclean_shutdown_is_still_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ext4 leaves zero-filled blocks in logs after a power loss: that is a log, not binary."""
    path = tmp_path / "auth.log"
    path.write_bytes(AUTH + b"\x00" * 4096 + AUTH)
    assert binary_reason(path) is None
    assert main(["replay", str(path), "--log", "auth"]) == 0
    assert " parsed" in capsys.readouterr().out
    exe = tmp_path / "ls"
    exe.write_bytes(Path("/bin/ls").read_bytes()[:8192])
    assert binary_reason(exe) == "binary data (NUL bytes), not a text log"


def test_a_missing_file_is_one_plain_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.log"
    assert main(["replay", str(missing), "--log", "auth"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"vedette replay: {missing}: No such file or directory")
