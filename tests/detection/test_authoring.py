"""Rule-author papercuts: typos are errors at their line, clear messages, readable failures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from agent.cli import main
from agent.detection import load_rules
from agent.detection.authoring import typo
from agent.detection.fields import lookup
from tests.detection.helpers import rule_doc, write_rules

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"

CURL = """\
title: curl use
id: 5d0c9d4e-6f1c-4b8e-9d55-0000000000e1
name: curl_use
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /curl
  condition: sel
level: low
"""
EVENT = {"@timestamp": "2026-01-01T00:00:00Z",
         "logsource": {"product": "linux", "category": "process_creation"},
         "process.executable": "/usr/bin/curl"}


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, n: int) -> str:
    return path.read_text().splitlines()[n - 1].strip()


def with_fixture(tmp_path: Path, expect: str) -> Path:
    write(tmp_path, "curl.yml", CURL)
    write(tmp_path / "curl.tests", "a.jsonl", json.dumps(EVENT) + "\n")
    return write(tmp_path / "curl.tests", "expect.yml", expect)


# ---------------------------------------------------------------------------- fixtures


def test_unknown_case_key_is_an_error_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = with_fixture(tmp_path, """\
        cases:
          - name: fires
            input: a.jsonl
            expect: [{rule: curl_use}]
          - name: silent
            input: a.jsonl
            flsh: false
            expect: []
        """)
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {expect}:7: case 2: unknown key 'flsh'" in out
    assert "flush" in out  # the valid keys are listed


def test_unknown_expectation_key_and_bad_time_point_at_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expect = with_fixture(tmp_path, """\
        cases:
          - name: fires
            input: a.jsonl
            expect:
              - rule: curl_use
                cont: 1
        """)
    assert main(["rules", "test", str(tmp_path)]) == 1
    assert f"{expect}:6: case 'fires': unknown key 'cont' in an expectation" in \
        capsys.readouterr().out
    expect = with_fixture(tmp_path, """\
        cases:
          - name: fires
            input: a.jsonl
            expect:
              - rule: curl_use
                at: yesterday
        """)
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{expect}:6:" in out and "RFC 3339" in out and "2026-01-01T00:00:50Z" in out


def test_failures_print_rfc3339_times_and_rule_titles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_fixture(tmp_path, """\
        cases:
          - name: fires late
            input: a.jsonl
            expect: [{rule: curl_use, at: "2026-01-01T00:00:10Z"}]
          - name: silent
            input: a.jsonl
            expect: []
        """)
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert ("'curl use' (5d0c9d4e-6f1c-4b8e-9d55-0000000000e1): fired at "
            "2026-01-01T00:00:00.000000Z, expected 2026-01-01T00:00:10.000000Z ± 1 s") in out
    assert "unexpected alert of 'curl use'" in out and "at 2026-01-01T00:00:00.000000Z" in out
    assert "1795" not in out  # no epoch seconds
    assert "2 cases: 0 passed, 2 failed; 1 rule," in out


# ---------------------------------------------------------------------------- field typos


def test_typod_field_fails_validate_at_the_field_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "su.yml", """\
        title: base
        id: 0b6d3c51-2f6e-4d5b-9a44-8d3f2b1c7e10
        logsource: {product: linux, service: su}
        detection:
          failure:
            event.action: su
            event.outcom|contains: fail
          condition: failure
        level: low
        """)
    assert main(["rules", "validate", "--no-lint", str(tmp_path)]) == 1  # not only --strict
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{path}:7: unknown field 'event.outcom' for linux/su events: "
                      "did you mean 'event.outcome'?")
    assert out[-1] == "1 rule: 0 compiled, 0 rejected, 1 error"


@pytest.mark.parametrize(("logsource", "name", "expected"), [
    (("linux", "process_creation", None), "Commandline", "'CommandLine'"),
    (("linux", "process_creation", None), "process.comand_line", "'process.command_line'"),
    (("vedette", "host_metrics", None), "host.cpu.usge", "'host.cpu.usage'"),
    (("vedette", "host_metrics", None), "whatever", "docs/events.md"),
])
def test_typos_are_recognised(logsource: tuple[str, str | None, str | None], name: str,
                              expected: str) -> None:
    entry = lookup(*logsource)
    assert entry is not None
    hint = typo(entry, name)
    assert hint is not None and expected in hint


@pytest.mark.parametrize(("key", "name"), [
    (("linux", "process_creation", None), "LogonId"),
    (("linux", "process_creation", None), "Hashes"),
    (("linux", "process_creation", None), "Company"),
    (("linux", "network_connection", None), "TargetUserName"),
    (("linux", "file_event", None), "LogonId"),
])
def test_fields_vedette_does_not_produce_are_not_typos(
    key: tuple[str, str | None, str | None], name: str
) -> None:
    """Windows and SigmaHQ field names stay rejections (the rule is valid, just not for us)."""
    entry = lookup(*key)
    assert entry is not None
    assert typo(entry, name) is None, (key, name)


def test_third_party_typo_stays_a_rejection_with_the_hint(tmp_path: Path) -> None:
    write_rules(tmp_path / "sigma", rule_doc({"sel": {"Commandline": "x"}, "condition": "sel"}))
    report = load_rules([], [tmp_path / "sigma"])
    assert not report.errors and len(report.rejections) == 1
    report = load_rules([tmp_path / "sigma"])
    assert len(report.errors) == 1 and "did you mean 'CommandLine'" in report.errors[0].reason


@pytest.mark.skipif(not (SHARED / "sigmahq").is_dir(), reason="../shared/sigmahq not present")
def test_sigmahq_rules_load_as_before_as_own_and_as_third_party() -> None:
    for report in (load_rules([SHARED / "sigmahq"]), load_rules([], [SHARED / "sigmahq"])):
        assert not report.errors, [str(e) for e in report.errors[:3]]
        # 246 compiled since USER is mapped on linux/sudo (CVE-2019-14287); the 2 rejections
        # have stated reasons (docs/rules.md)
        assert (report.compiled, len(report.rejections)) == (246, 2), report.summary_line()


# ---------------------------------------------------------------------------- Sigma errors


def test_timespan_error_shows_the_valid_format_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yml", """\
        title: base
        id: 0b6d3c51-2f6e-4d5b-9a44-8d3f2b1c7e10
        name: curl_base
        logsource: {product: linux, category: process_creation}
        detection:
          sel: {Image|endswith: /curl}
          condition: sel
        ---
        title: many curls
        id: 6a3c8f0e-95d1-4a77-8c1b-3f0b9c2d4e21
        correlation:
          type: event_count
          rules: [curl_base]
          group-by: [user.name]
          timespan: 2 minutes
          condition: {gte: 5}
        """)
    errors = load_rules([tmp_path]).errors
    assert len(errors) == 1
    assert errors[0].line == 15 and line_of(path, 15).startswith("timespan:")
    assert "30s, 10m, 2h" in errors[0].reason


def test_empty_detection_points_at_detection_and_lint_shows_no_internals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "e.yml", """\
        title: empty detection
        id: 0b6d3c51-2f6e-4d5b-9a44-8d3f2b1c7e11
        logsource: {product: linux, service: su}
        detection:
          condition: sel
        level: low
        """)
    write(tmp_path, "curl.yml", CURL)
    assert main(["rules", "validate", str(tmp_path)]) == 1  # with pySigma's lint
    out = capsys.readouterr().out
    assert f"{path}:4: No detections defined" in out
    assert "object has no attribute" not in out and "could not run" not in out
    assert out.splitlines()[-1] == "2 rules: 1 compiled, 0 rejected, 1 error"
