"""One sweep over the rules shipped in rules/: metadata, naming, ATT&CK, fixtures, all pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.alerts import LEVELS
from agent.attack import TACTICS
from agent.detection import LoadReport, load_rules
from agent.detection.fields import lookup
from agent.detection.fixtures import run_tests
from agent.detection.loader import rule_files
from agent.detection.yamlsafe import read_documents
from agent.offline.inputs import fixture_decoders

RULES = Path(__file__).resolve().parents[2] / "rules"
FILE_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*\.yml$")
NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
TECHNIQUE = re.compile(r"^attack\.t\d{4}(\.\d{3})?$")


@pytest.fixture(scope="module")
def report() -> LoadReport:
    return load_rules([RULES])


@pytest.fixture(scope="module")
def documents() -> list[tuple[Path, dict[str, object]]]:
    out = []
    for path in rule_files(RULES):
        docs, _ = read_documents(path)
        out.extend((path, d.data) for d in docs if isinstance(d.data, dict))
    return out


def test_every_rule_loads_compiles_and_nothing_is_rejected(report: LoadReport) -> None:
    assert not report.errors, [str(e) for e in report.errors]
    assert not report.rejections, [str(r) for r in report.rejections]
    assert report.compiled >= 10


def test_file_names_and_areas(report: LoadReport) -> None:
    for path in rule_files(RULES):
        assert FILE_NAME.match(path.name), path
        assert path.parent.parent == RULES, f"{path}: rules live in rules/<area>/<name>.yml"


def test_metadata(documents: list[tuple[Path, dict[str, object]]]) -> None:
    names: dict[str, Path] = {}
    for path, doc in documents:
        where = f"{path}: {doc.get('title')}"
        for key in (
            "title",
            "id",
            "name",
            "status",
            "description",
            "author",
            "date",
            "level",
            "tags",
        ):
            assert doc.get(key), f"{where}: missing {key}"
        assert doc["level"] in LEVELS, where
        assert doc["status"] in ("stable", "test", "experimental"), where
        assert NAME.match(str(doc["name"])), where
        assert doc["name"] not in names, f"{where}: name also used in {names.get(str(doc['name']))}"
        names[str(doc["name"])] = path
        assert len(str(doc["title"])) <= 110, where


def test_attack_tags(documents: list[tuple[Path, dict[str, object]]]) -> None:
    tactic_names = {key.replace("_", "-") for key in TACTICS}
    for path, doc in documents:
        tags = [str(t) for t in doc["tags"]]  # type: ignore[attr-defined]
        techniques = [t for t in tags if TECHNIQUE.match(t)]
        tactics = [
            t.removeprefix("attack.")
            for t in tags
            if t.startswith("attack.") and not TECHNIQUE.match(t)
        ]
        assert techniques, f"{path}: {doc['title']}: no ATT&CK technique tag"
        assert tactics and all(t in tactic_names for t in tactics), f"{path}: tactics {tactics}"


def test_logsources_are_produced(report: LoadReport) -> None:
    for rule in report.ruleset.detections:
        assert lookup(*rule.logsource) is not None, rule.source


def test_alerting_rules_have_positive_and_negative_fixtures_that_pass(report: LoadReport) -> None:
    result = run_tests(report, fixture_decoders())
    failures = [(r.file, r.case, r.problems) for r in result.results if not r.passed]
    assert not result.errors, [str(e) for e in result.errors]
    assert not failures, failures
    gaps = [(c.file, c.title, c.status) for c in result.coverage if c.status != "tested"]
    assert not gaps, gaps
    assert len(result.coverage) == sum(
        1 for r in report.ruleset.rules() if getattr(r, "output", True)
    )


# Validators that download MITRE data are skipped (no network in tests); ATT&CK tags are
# checked offline against agent/attack.py above.
ONLINE_VALIDATORS = {"attacktag", "d3_fendtag"}


def test_pysigma_validators_accept_every_rule() -> None:
    from sigma.collection import SigmaCollection  # noqa: PLC0415 - pySigma plugins are slow
    from sigma.plugins import InstalledSigmaPlugins  # noqa: PLC0415
    from sigma.validation import SigmaValidator  # noqa: PLC0415

    validators = InstalledSigmaPlugins.autodiscover().validators
    offline = [v for name, v in validators.items() if name not in ONLINE_VALIDATORS]
    assert len(offline) >= 20
    collection = SigmaCollection.load_ruleset([str(p) for p in rule_files(RULES)],
                                              collect_errors=True)
    assert not collection.errors
    issues = SigmaValidator(offline).validate_rules(collection.rules)
    assert not issues, [(type(i).__name__, [str(r.source) for r in i.rules]) for i in issues]
