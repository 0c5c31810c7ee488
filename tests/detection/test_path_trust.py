"""Rule paths writable by other users are refused (sshd StrictModes), with a clear reason."""

from __future__ import annotations

import os
from pathlib import Path

from agent.detection.path_trust import (
    UNSAFE_PATH_RULE,
    check_path,
    integrity_alert,
    load_trusted_rules,
)

REPO = Path(__file__).resolve().parents[2]
RULE = (REPO / "rules" / "auth" / "su_to_root.yml").read_text()


def _rules(tmp_path: Path) -> Path:
    base = tmp_path / "etc"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    rules = base / "rules"
    rules.mkdir()
    rules.chmod(0o755)
    (rules / "su.yml").write_text(RULE)
    (rules / "su.yml").chmod(0o644)
    return rules


def test_a_private_rule_tree_is_accepted(tmp_path: Path) -> None:
    assert check_path(_rules(tmp_path)) is None
    assert check_path(REPO / "rules") is None


def test_world_writable_dir_file_or_parent_is_refused(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    rules.chmod(0o777)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.culprit == rules
    assert unsafe.reason == "is writable by everyone"
    rules.chmod(0o755)
    (rules / "su.yml").chmod(0o666)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.culprit == rules / "su.yml"
    (rules / "su.yml").chmod(0o644)
    rules.parent.chmod(0o777)  # someone else could rename rules/ and put their own there
    unsafe = check_path(rules / "su.yml")
    assert unsafe is not None and unsafe.culprit == rules.parent
    rules.parent.chmod(0o1777)  # sticky, like /tmp: entries cannot be replaced by others
    assert check_path(rules) is None


def test_group_writable_by_another_group_and_foreign_owner_are_refused(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    os.chown(rules / "su.yml", -1, 4242)
    (rules / "su.yml").chmod(0o664)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.reason == "is writable by group 4242"
    os.chown(rules / "su.yml", 4242, -1)
    (rules / "su.yml").chmod(0o644)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.reason == "is owned by uid 4242"


def test_a_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    elsewhere = tmp_path / "open.yml"
    elsewhere.write_text(RULE.replace("su_to_root", "su_to_root_2"))
    elsewhere.chmod(0o666)
    (rules / "link.yml").symlink_to(elsewhere)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.culprit == rules / "link.yml"


def test_a_symlink_into_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    # the target file is root's and 0644, but its folder is another user's: he can rename
    # it away and put his own file (or a link) in its place between the check and the load
    rules = _rules(tmp_path)
    home = tmp_path / "home-bob"
    home.mkdir()
    os.chown(home, 4242, 4242)
    home.chmod(0o755)
    target = home / "r.yml"
    target.write_text(RULE.replace("su_to_root", "su_to_root_3"))
    target.chmod(0o644)
    (rules / "link.yml").symlink_to(target)
    unsafe = check_path(rules)
    assert unsafe is not None and unsafe.culprit == home
    assert unsafe.reason == "is owned by uid 4242"


def test_refused_paths_are_errors_alerts_and_a_metric(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    rules.chmod(0o777)
    report, alerts = load_trusted_rules([rules], [], allow_unsafe=False, now=1795255246.0)
    assert report.compiled == 0
    (error,) = report.errors
    assert str(error).startswith(f"{rules}: rule path refused: {rules} is writable by everyone")
    (alert,) = alerts
    assert alert.rule == UNSAFE_PATH_RULE and alert.group == {"file.path": str(rules)}
    assert alert == integrity_alert(check_path(rules), 1795255246.0)  # type: ignore[arg-type]
    report, alerts = load_trusted_rules([rules], [], allow_unsafe=True)
    assert report.compiled == 1 and not report.errors and not alerts
