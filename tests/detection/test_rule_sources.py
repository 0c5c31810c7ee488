"""Additive rule search (shipped, then local folders overriding by id) and the blind-spot check."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Config, DetectionSection
from agent.detection.loader import load_rules
from agent.detection.sources import blind_spots, load_configured, path_problems
from tests.rule_texts import process_rule, unsupported_field_rule

ID_A = "11111111-1111-4111-8111-111111111111"
ID_B = "22222222-2222-4222-8222-222222222222"
UNSUPPORTED = unsupported_field_rule("33333333-3333-4333-8333-333333333333")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def rule(rule_id: str, title: str, image: str = "nc", level: str = "low") -> str:
    return process_rule(rule_id, title=title, image=image, level=level)


def config(**detection: object) -> Config:
    return Config.model_validate({"detection": detection})


def test_a_local_folder_overrides_a_shipped_rule_by_id_and_adds_rules(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    local = tmp_path / "local"
    write(shipped, "a.yml", rule(ID_A, "shipped A"))
    override = write(local, "a-tuned.yml", rule(ID_A, "local A", image="ncat", level="high"))
    write(local, "b.yml", rule(ID_B, "local B"))
    report = load_rules([shipped], local_paths=[local])
    assert not report.errors
    titles = {r.id: (r.ref.title, r.ref.level) for r in report.ruleset.rules()}
    assert titles == {ID_A: ("local A", "high"), ID_B: ("local B", "low")}
    assert len(report.overrides) == 1
    assert report.overrides[0].startswith(f"{override}:1: overrides {ID_A}")
    assert report.summary_line().startswith("2 rules: 2 compiled")


def test_a_rejected_override_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    """An override that cannot run took the shipped rule's place: that fails validate."""
    shipped = tmp_path / "shipped"
    write(shipped, "u.yml", rule("33333333-3333-4333-8333-333333333333", "shipped U"))
    override = write(tmp_path / "local", "u.yml", UNSUPPORTED)
    report = load_rules([shipped], local_paths=[tmp_path / "local"])
    assert not report.rejections and not list(report.ruleset.rules())
    assert [(e.path, e.line) for e in report.errors] == [(str(override), 1)]
    assert report.errors[0].reason.startswith(
        "rejected override of 33333333-3333-4333-8333-333333333333 (needs a field nobody")
    # a local rule that replaces nothing stays a plain rejection
    alone = load_rules([], local_paths=[tmp_path / "local"])
    assert len(alone.rejections) == 1 and not alone.errors


def test_duplicate_ids_within_one_layer_stay_errors(tmp_path: Path) -> None:
    local = tmp_path / "local"
    write(local, "a.yml", rule(ID_A, "one"))
    write(local, "b.yml", rule(ID_A, "two"))
    report = load_rules([], local_paths=[local])
    assert [e.reason.split(" (")[0] for e in report.errors] == [f"duplicate rule id {ID_A}"]
    shipped = tmp_path / "shipped"
    write(shipped, "a.yml", rule(ID_A, "one"))
    write(shipped, "b.yml", rule(ID_A, "two"))
    assert load_rules([shipped]).errors


def test_configured_search_is_shipped_then_local(tmp_path: Path) -> None:
    local = tmp_path / "local"
    write(local, "b.yml", rule(ID_B, "local B"))
    shipped_only = load_configured(DetectionSection())
    both = load_configured(DetectionSection(rule_paths=[local]))
    assert shipped_only.compiled > 10  # the repository's rules/
    assert both.compiled == shipped_only.compiled + 1
    local_only = load_configured(DetectionSection(rule_paths=[local], shipped_rules=False))
    assert [r.id for r in local_only.ruleset.rules()] == [ID_B]


def test_no_rules_missing_paths_and_rejected_logsources_are_blind_spots(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = config(shipped_rules=False, rule_paths=[str(empty)])
    spots = blind_spots(cfg, load_configured(cfg.detection))
    assert len(spots) == 1 and spots[0].startswith("no rules loaded (0 rules")

    missing = tmp_path / "nope"
    cfg = config(rule_paths=[str(missing)])
    spots = blind_spots(cfg, load_configured(cfg.detection))
    assert spots == [f"{missing}: no such file or directory (detection.rule_paths)"]
    assert path_problems(cfg.detection) == spots

    folder = tmp_path / "fim"
    write(folder, "bad.yml", UNSUPPORTED)
    write(folder, "ok.yml", rule(ID_A, "process rule"))
    cfg = config(shipped_rules=False, rule_paths=[str(folder)])
    spots = blind_spots(cfg, load_configured(cfg.detection))
    assert len(spots) == 1
    assert spots[0].startswith("every rule for logsource linux/file_event (collector fim) was "
                               "rejected (1), e.g. ")
    off = Config.model_validate({"detection": {"shipped_rules": False,
                                               "rule_paths": [str(folder)]},
                                 "fim": {"enabled": False}})
    assert blind_spots(off, load_configured(off.detection)) == []


@pytest.mark.parametrize("detection", [
    {"shipped_rules": False, "rule_paths": ["/nonexistent/rules"], "allow_empty": True},
    {"shipped_rules": False, "allow_empty": True},
])
def test_allow_empty_accepts_a_blind_agent(detection: dict[str, object]) -> None:
    cfg = config(**detection)
    assert blind_spots(cfg, load_configured(cfg.detection)) == []


def test_the_shipped_rules_leave_no_blind_spot() -> None:
    cfg = Config()
    report = load_configured(cfg.detection)
    assert not report.errors
    assert blind_spots(cfg, report) == []
