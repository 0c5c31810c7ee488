"""The one YAML guard: expanded size, size before parsing, symlinks to non-rule files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.detection import load_rules
from agent.detection.yamlsafe import read_documents
from agent.errors import ConfigErrors, RuleError
from agent.yamlguard import YamlLimits, YamlRefused, check_events

REPO = Path(__file__).resolve().parents[2]
RULE = (REPO / "rules" / "auth" / "su_to_root.yml").read_text()


def _bomb(aliases: int = 5000, size: int = 900_000) -> str:
    """915 KB: one 900 KB string and 5,000 aliases of it (4.5 GB once expanded)."""
    rows = ["title: bomb", "id: 0f4b5f4e-8a57-4a0c-9a3d-3a8a2f7f0d11",
            "logsource: {product: linux, service: su}",
            "detection:", f"  big: &s {'x' * size}", "  sel:", "    user.name:"]
    rows += ["      - *s"] * aliases
    rows += ["  condition: sel"]
    return "\n".join(rows) + "\n"


def test_alias_bomb_rule_file_is_refused_quickly_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(_bomb())
    assert 900_000 < path.stat().st_size < 1 << 20  # passes the file-size limit
    started = time.monotonic()
    report = load_rules([path])
    elapsed = time.monotonic() - started
    (error,) = report.errors
    assert "characters of values once aliases are expanded (YAML bomb?)" in str(error)
    # refused at the alias that crossed 4 MiB: the 4th (string 900 KB + 4 x 900 KB)
    assert str(error).startswith(f"{path}:11: ")
    assert elapsed < 5, elapsed


def test_alias_bomb_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vedette.yaml"
    path.write_text("agent:\n  labels:\n    a: &s " + "y" * 900_000 + "\n" +
                    "".join(f"    k{i}: *s\n" for i in range(5000)))
    with pytest.raises(ConfigErrors) as info:
        load_config(path, environ={})
    (error,) = info.value.errors
    assert "once aliases are expanded (YAML bomb?)" in str(error)
    assert str(error).startswith(f"{path}:7: ")


def test_expanded_measures_follow_nested_anchors() -> None:
    limits = YamlLimits(1 << 20, 10, 1000, 100)
    check_events("a: &a [xxxxxxxxxx, xxxxxxxxxx]\nb: [*a, *a, *a]\n", limits)  # 80 chars
    with pytest.raises(YamlRefused) as info:
        check_events("a: &a [xxxxxxxxxx, xxxxxxxxxx]\nb: &b [*a, *a]\nc: [*b, *b]\n", limits)
    assert info.value.line == 3 and "characters" in info.value.reason
    with pytest.raises(YamlRefused) as info:  # depth through aliases counts
        check_events("a: &a [[[[[[[1]]]]]]]\nb: [[[[*a]]]]\n", limits)
    assert "once aliases are expanded" in info.value.reason and info.value.line == 2


def test_rules_validate_refuses_a_100_mb_file_before_parsing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ok.yml").write_text(RULE)
    with (rules / "huge.yml").open("w") as handle:
        handle.write(RULE)
        chunk = "# " + "x" * (1 << 20) + "\n"
        for _ in range(100):
            handle.write(chunk)
    started = time.monotonic()
    assert main(["rules", "validate", str(rules)]) == 1
    elapsed = time.monotonic() - started
    out = capsys.readouterr()
    assert f"{rules / 'huge.yml'}: file is " in out.out + out.err
    # the whole command (loading and linting the good rule included) in seconds, not
    # minutes; the refusal itself is a stat call
    assert elapsed < 20, elapsed
    started = time.monotonic()
    report = load_rules([rules / "huge.yml"])
    assert time.monotonic() - started < 0.5 and len(report.errors) == 1


def test_symlinks_to_files_that_are_not_rule_files_are_not_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secrets"
    secret.write_text("title: SECRET1\nid: SECRET2\nlevel: SECRET3\ndate: SECRET4\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "linked.yml").symlink_to(secret)
    netplan = tmp_path / "01-wifi.yaml"  # YAML, but not a rule: pySigma would quote it
    netplan.write_text("network:\n  wifis:\n    wlan0:\n      password: SECRET5\n"
                       "level: SECRET6\n")
    (rules / "netplan.yml").symlink_to(netplan)
    (tmp_path / "real.yml").write_text(RULE)
    (rules / "also.yml").symlink_to(tmp_path / "real.yml")  # to a rule file: followed
    report = load_rules([rules])
    assert report.compiled == 1
    linked, netplan_error = sorted(report.errors, key=str)
    assert "SECRET" not in str(linked) + str(netplan_error)
    assert str(linked) == (f"{rules / 'linked.yml'}: symlink to a file that is not a .yml/.yaml "
                           "rule file (not read)")
    assert str(netplan_error) == (f"{rules / 'netplan.yml'}: symlink to a YAML file that is not "
                                  "a rule file (content not shown)")
    assert main(["rules", "validate", str(rules)]) == 1
    out = capsys.readouterr()
    assert "SECRET" not in out.out + out.err and "linked.yml" in out.out + out.err


@pytest.mark.parametrize("number", [":".join(["59"] * 150_000), "0x" + "f" * 200_000,
                                    "0b" + "1" * 900_000])
def test_a_huge_number_is_refused_before_it_is_constructed(tmp_path: Path, number: str) -> None:
    # YAML 1.1 sexagesimal ints (1:2:3) are built digit by digit: 450 KB took 11 s to construct
    path = tmp_path / "num.yml"
    path.write_text(RULE.replace("detection:", f"n: {number}\ndetection:", 1))
    started = time.monotonic()
    with pytest.raises(RuleError, match="number of more than"):
        read_documents(path)
    assert time.monotonic() - started < 5


def test_long_strings_that_are_not_numbers_still_load(tmp_path: Path) -> None:
    path = tmp_path / "str.yml"
    path.write_text(RULE.replace("detection:", f"n: a{'1:' * 5000}1\ndetection:", 1))
    docs, _ = read_documents(path)
    assert docs[0].data["n"].startswith("a1:")
