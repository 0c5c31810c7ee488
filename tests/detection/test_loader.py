"""Loading never raises: every bad input is a located error or a rejection with a reason."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.detection import Engine, load_rules
from agent.detection.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES
from agent.metrics import AgentMetrics
from tests.detection.helpers import load, proc, rule_doc, write_rules

GOOD = """\
title: good
id: 5d0c9d4e-6f1c-4b8e-9d55-000000000001
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /curl
  condition: sel
"""


def errors_of(folder: Path, text: str) -> list[str]:
    path = folder / "bad.yml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    report = load_rules([folder])
    return [e.location_text() for e in report.errors]


def test_good_rule_and_summary_line(tmp_path: Path) -> None:
    report = load(tmp_path, GOOD)
    assert report.summary_line() == "1 rule: 1 compiled, 0 rejected, 0 errors"
    assert report.ruleset.detections[0].ref.title == "good"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, GOOD + "  broken: [unclosed\n")
    assert (
        len(errs) == 1
        and errs[0].startswith(f"{tmp_path / 'bad.yml'}:")
        and "invalid YAML" in errs[0]
    )


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        bomb.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    start = time.perf_counter()
    errs = errors_of(tmp_path, "\n".join(bomb) + "\n")
    assert time.perf_counter() - start < 2
    assert len(errs) == 1 and "YAML bomb" in errs[0]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    flow = "detection: " + "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10) + "\n"
    errs = errors_of(tmp_path, flow)
    assert len(errs) == 1 and "nesting deeper" in errs[0]
    block = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 60 + "v: 1\n"
    errs = errors_of(tmp_path, block)
    assert len(errs) == 1 and "nesting deeper" in errs[0]


def test_huge_file_is_refused(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, GOOD + "#" * (MAX_FILE_BYTES + 1) + "\n")
    assert len(errs) == 1 and "larger than" in errs[0]


def test_not_utf8_and_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_bytes(b"title: \xff\xfe\n")
    (tmp_path / "b.yml").write_text("- just\n- a list\n")
    report = load_rules([tmp_path])
    texts = sorted(e.location_text() for e in report.errors)
    assert "not UTF-8" in texts[0] and "must be a mapping" in texts[1]


@pytest.mark.parametrize(
    ("detection", "needle", "line"),
    [
        ({"sel": {"Image|nosuchmodifier": "x"}, "condition": "sel"}, "nosuchmodifier", 9),
        ({"sel": {"CommandLine|re": "(unclosed"}, "condition": "sel"}, "(unclosed", 9),
        ({"sel": {"Image": "x"}, "condition": "sel and"}, "", 10),
        ({"sel": {"Image": "x"}, "condition": "missing"}, "missing", 10),
    ],
)
def test_invalid_sigma_is_a_located_error(
    tmp_path: Path, detection: dict[str, object], needle: str, line: int
) -> None:
    doc = rule_doc(detection, id="5d0c9d4e-6f1c-4b8e-9d55-000000000002", status=None)
    doc.pop("status")
    path = write_rules(tmp_path, doc)
    report = load_rules([tmp_path])
    assert len(report.errors) == 1, report.summary_line()
    err = report.errors[0]
    assert err.path == str(path) and needle in err.reason
    assert err.line == line, (err.line, path.read_text())
    assert report.summary_line() == "1 rule: 0 compiled, 0 rejected, 1 error"


def test_catastrophic_backtracking_regex_runs_in_linear_time(tmp_path: Path) -> None:
    doc = rule_doc({"sel": {"CommandLine|re": "^(a+)+$"}, "condition": "sel"})
    report = load(tmp_path, doc)
    assert not report.errors and not report.rejections
    engine = Engine(report.ruleset)
    start = time.perf_counter()
    assert not engine.process(proc(process__command_line="a" * 50_000 + "!"))
    assert time.perf_counter() - start < 0.5


def test_regex_re2_cannot_run_is_an_error_not_a_crash(tmp_path: Path) -> None:
    doc = rule_doc({"sel": {"CommandLine|re": "(?<=x)y"}, "condition": "sel"})
    report = load(tmp_path, doc)
    assert len(report.errors) + len(report.rejections) == 1
    assert not report.ruleset.detections


def test_duplicate_ids_are_errors_naming_both_places(tmp_path: Path) -> None:
    write_rules(tmp_path, GOOD, name="one.yml")
    write_rules(tmp_path, GOOD, name="two.yml")
    report = load_rules([tmp_path])
    assert len(report.errors) == 1
    assert "duplicate rule id" in report.errors[0].reason
    assert "one.yml:1" in report.errors[0].reason and report.errors[0].path.endswith("two.yml")
    assert len(report.ruleset.detections) == 1


def test_missing_id_is_an_error(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, GOOD.replace("id: 5d0c9d4e-6f1c-4b8e-9d55-000000000001\n", ""))
    assert len(errs) == 1 and "no id" in errs[0]


def corr(rid: str, name: str, refs: list[str]) -> dict[str, object]:
    return {
        "title": name,
        "id": rid,
        "name": name,
        "correlation": {
            "type": "event_count",
            "rules": refs,
            "group-by": ["User"],
            "timespan": "1m",
            "condition": {"gte": 2},
        },
    }


def test_correlation_cycles_and_unknown_references(tmp_path: Path) -> None:
    a = corr("5d0c9d4e-6f1c-4b8e-9d55-00000000000a", "ca", ["cb"])
    b = corr("5d0c9d4e-6f1c-4b8e-9d55-00000000000b", "cb", ["ca"])
    c = corr("5d0c9d4e-6f1c-4b8e-9d55-00000000000c", "cc", ["nowhere"])
    report = load(tmp_path, a, b, c)
    reasons = sorted(e.reason for e in report.errors)
    assert sum("reference cycle" in r for r in reasons) == 2
    assert any("unknown rule(s): nowhere" in r for r in reasons)
    assert all(e.line is not None for e in report.errors)
    assert not report.ruleset.correlations


def test_correlation_of_correlation_is_rejected(tmp_path: Path) -> None:
    base = rule_doc({"sel": {"Image": "/x"}, "condition": "sel"}, name="base")
    inner = corr("5d0c9d4e-6f1c-4b8e-9d55-0000000000a1", "inner", ["base"])
    outer = corr("5d0c9d4e-6f1c-4b8e-9d55-0000000000a2", "outer", ["inner"])
    report = load(tmp_path, base, inner, outer)
    assert not report.errors
    assert [r.reason for r in report.rejections] == [
        "correlations of correlations are not supported"
    ]


def test_rejections_carry_reasons_and_are_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    docs = [
        rule_doc({"sel": {"LogonId": 0}, "condition": "sel"}),
        rule_doc(
            {"sel": {"Image": "x"}, "condition": "sel"},
            {"product": "windows", "category": "process_creation"},
        ),
        rule_doc({"keywords": ["x"], "condition": "keywords"}),
        rule_doc({"sel": {"Image": "%placeholder%"}, "condition": "sel"}),
    ]
    docs[3]["detection"]["sel"] = {"Image|expand": "%admins%"}
    write_rules(tmp_path, *docs)
    report = load_rules([tmp_path], metrics=AgentMetrics(registry))
    reasons = [r.reason for r in report.rejections]
    assert not report.errors, [str(e) for e in report.errors]
    assert "needs field(s) LogonId" in reasons[0]
    assert "not produced by Vedette" in reasons[1]
    assert "keywords need a raw message" in reasons[2]
    assert "placeholders" in reasons[3]
    assert report.summary_line() == "4 rules: 0 compiled, 4 rejected, 0 errors"
    assert registry.get_sample_value("vedette_rules_rejected_total", {"reason": "field"}) == 2


def test_vedette_options_are_validated_with_their_line(tmp_path: Path) -> None:
    doc = rule_doc({"sel": {"Image": "x"}, "condition": "sel"}, vedette={"cooldwn": 5})
    path = write_rules(tmp_path, doc)
    report = load_rules([tmp_path])
    assert len(report.errors) == 1 and "unknown option vedette.cooldwn" in report.errors[0].reason
    # the line of the offending option, not only of the vedette: block
    assert path.read_text().splitlines()[report.errors[0].line - 1].strip() == "cooldwn: 5"
    doc = rule_doc({"sel": {"Image": "x"}, "condition": "sel"},
                   vedette={"fields": ["user.name"], "max_groups": -1})
    errors = load(tmp_path, doc).errors
    assert errors and path.read_text().splitlines()[errors[0].line - 1].strip() == \
        "max_groups: -1"


def test_missing_path_and_errors_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    report = load_rules([tmp_path / "nope"], metrics=AgentMetrics(registry))
    assert "no such file" in report.errors[0].reason
    assert registry.get_sample_value("vedette_rule_load_errors_total") == 1


def test_third_party_rules_carry_ruleset_author_and_licence(tmp_path: Path) -> None:
    folder = tmp_path / "sigma"
    write_rules(folder, GOOD.replace("title: good", "title: good\nauthor: Jane Doe"))
    report = load_rules([], [folder])
    ref = report.ruleset.detections[0].ref
    assert (ref.ruleset, ref.author, ref.license) == ("sigmahq", "Jane Doe", "DRL-1.1")


def test_fixture_folders_are_not_rules(tmp_path: Path) -> None:
    write_rules(tmp_path, GOOD, name="r.yml")
    (tmp_path / "r.tests").mkdir()
    (tmp_path / "r.tests" / "expect.yml").write_text("cases: []\n")
    assert load_rules([tmp_path]).summary_line() == "1 rule: 1 compiled, 0 rejected, 0 errors"


def test_correlation_options_are_checked_against_the_base_logsource(tmp_path: Path) -> None:
    base = rule_doc({"sel": {"Image": "/x"}, "condition": "sel"}, name="base")
    good = corr("5d0c9d4e-6f1c-4b8e-9d55-0000000000b1", "good", ["base"])
    good["vedette"] = {"fields": ["CommandLine"]}
    report = load(tmp_path, base, good)
    assert not report.errors
    assert report.ruleset.correlations[0].options.fields == ("process.command_line",)
    bad = corr("5d0c9d4e-6f1c-4b8e-9d55-0000000000b2", "bad", ["base"])
    bad["vedette"] = {"fields": ["LogonId"]}
    wrong = corr("5d0c9d4e-6f1c-4b8e-9d55-0000000000b3", "wrong", ["base"])
    wrong["vedette"] = {"group_by": ["User"]}
    reasons = [e.reason for e in load(tmp_path, base, bad, wrong).errors]
    assert any("'LogonId' is not a field" in r for r in reasons)
    assert any("group_by is for single-event rules" in r for r in reasons)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6),
                    st.sampled_from(["Image", "sel", "condition", "and", "*", "|re", "1 of x"]))
keys = st.sampled_from(["sel", "condition", "Image|endswith", "CommandLine|contains|all",
                        "User", "x|re", "y|cidr", "z|gt", "keywords", "Image|exists",
                        "type", "rules", "group-by", "timespan", "vedette", "a|fieldref"])
nested = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(detection=nested, logsource=nested, correlation=nested, vedette=nested)
def test_random_documents_never_raise(
    detection: object, logsource: object, correlation: object, vedette: object
) -> None:
    docs = [
        {"title": "r", "id": "5d0c9d4e-6f1c-4b8e-9d55-0000000000f1", "name": "r",
         "logsource": logsource, "detection": detection, "vedette": vedette},
        {"title": "c", "id": "5d0c9d4e-6f1c-4b8e-9d55-0000000000f2", "correlation": correlation},
        {"title": "d", "id": "5d0c9d4e-6f1c-4b8e-9d55-0000000000f3",
         "logsource": {"product": "linux", "category": "process_creation"},
         "detection": {"sel": detection, "condition": "sel"}},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report = load_rules([write_rules(Path(tmp), *docs).parent])
    assert report.total >= 1
    assert all(e.path for e in report.errors)
    engine = Engine(report.ruleset)
    engine.process(proc(process__executable="/bin/sh", process__command_line="sh -c x"))
    engine.advance(10.0)
