"""`vedette rules validate|list|test`: tools for rule authors.

Without a PATH the commands use the configured rule set: the rules shipped with Vedette, then
``detection.extra_rule_paths`` (third-party folders), then the local ``detection.rule_paths``
(default ``/etc/vedette/rules``), which add rules or override shipped ones by id.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from agent.commands.common import print_config_errors
from agent.config import load_config
from agent.detection.fixtures import TestReport, junit_xml, run_tests
from agent.detection.lint import lint
from agent.detection.loader import LoadReport, load_rules
from agent.detection.rule import CorrelationRule, Rule
from agent.detection.sources import load_configured
from agent.detection.tuning import Tuned, apply_config
from agent.errors import ConfigErrors
from agent.offline.inputs import fixture_decoders

EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("rules", help="validate, list and test detection rules")
    sub = parser.add_subparsers(dest="rules_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                       help="rule files or folders (default: the configured rule paths)")
        p.add_argument("--config", type=Path, default=None,
                       help="YAML config file (default: /etc/vedette/vedette.yaml)")

    validate = sub.add_parser("validate", help="lint rules: errors, rejections, summary line")
    common(validate)
    validate.add_argument("--strict", action="store_true", help="rejections also fail (exit 1)")
    validate.add_argument("--no-lint", action="store_true",
                          help="skip pySigma's style validators (warnings only)")
    validate.set_defaults(func=validate_command)

    lister = sub.add_parser("list", help="id, title, level, logsource, correlation, test status")
    common(lister)
    lister.set_defaults(func=list_command)

    test = sub.add_parser("test", help="run each rule's fixtures on a virtual clock")
    common(test)
    test.add_argument("--rule", default=None, help="only the fixtures of this rule (id or name)")
    test.add_argument("--junit", type=Path, default=None, help="write JUnit XML here")
    test.add_argument("--strict", action="store_true",
                      help="rules without a positive and a negative fixture fail")
    test.add_argument("-v", "--verbose", action="store_true", help="print every case")
    test.set_defaults(func=test_command)


def _paths(args: argparse.Namespace) -> list[Path]:
    """The PATHs given, else the configured ones (the config was loaded before by _load)."""
    if args.paths:
        return list(args.paths)
    config = load_config(args.config)
    return [*config.detection.resolved_rule_paths(), *config.detection.extra_rule_paths]


def _load(args: argparse.Namespace) -> LoadReport | None:
    report, _ = _load_tuned(args)
    return report


def _load_tuned(args: argparse.Namespace) -> tuple[LoadReport | None, Tuned | None]:
    """The rules, and (configured rule paths only) the config's disabled/trusted tuning."""
    if args.paths:
        return load_rules(args.paths), None
    try:
        config = load_config(args.config)
    except ConfigErrors as exc:
        print_config_errors(exc)
        return None, None
    report = load_configured(config.detection)
    det = config.detection
    return report, apply_config(report.ruleset, det.disabled_rules, det.trusted_sources)


def validate_command(args: argparse.Namespace) -> int:
    report, tuned = _load_tuned(args)
    if report is None:
        return EXIT_FAILED
    for err in report.errors:
        print(err.location_text())
    for rejection in report.rejections:
        print(rejection)
    for note in [*report.filters.notes, *(tuned.notes if tuned else [])]:
        print(note)
    if not args.no_lint:  # per folder: a local rule with a shipped rule's id is an override
        for warning in (w for path in _paths(args) for w in lint([path])):
            print(warning)
    print(report.summary_line())
    if report.errors or (args.strict and report.rejections):
        return EXIT_FAILED
    return 0


def _logsource(rule: Rule, report: LoadReport) -> str:
    if isinstance(rule, CorrelationRule):
        bases = {report.ruleset.by_id[r].logsource for r in rule.rules}  # type: ignore[union-attr]
        return ",".join(sorted("/".join(p for p in ls if p) for ls in bases))
    return "/".join(p for p in rule.logsource if p)


def list_command(args: argparse.Namespace) -> int:
    report, tuned = _load_tuned(args)
    if report is None:
        return EXIT_FAILED
    coverage = run_tests(report, fixture_decoders(), own_only=False, execute=False).coverage
    status = {c.rule_id: c.status for c in coverage}
    disabled = tuned.disabled if tuned else frozenset()
    rows = [("ID", "TITLE", "LEVEL", "LOGSOURCE", "CORRELATION", "TESTS")]
    for rule in report.ruleset.rules():
        kind = rule.type.value if isinstance(rule, CorrelationRule) else "-"
        test = status.get(rule.id, "silent (base rule)")
        if rule.id in disabled:
            test = "DISABLED (detection.disabled_rules)"
        rows.append((rule.id, rule.ref.title[:60], rule.ref.level, _logsource(rule, report),
                     kind, test))
    for flt in report.filters.filters:
        names = [report.ruleset.by_id[r].ref.title for r in flt.named] or ["any"]
        rows.append((flt.id, f"filter: {flt.title}"[:60], "-", ", ".join(names)[:60],
                     "filter", status.get(flt.id, "untested")))
    _table(rows)
    print(report.summary_line())
    return EXIT_FAILED if report.errors else 0


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def test_command(args: argparse.Namespace) -> int:
    report = _load(args)
    if report is None:
        return EXIT_FAILED
    for err in report.errors:
        print(err.location_text())
    # A rejected rule runs nothing: if it has fixtures, its author expects it to run, so it
    # fails (an unknown field after an edit must not read as "all passed"); a rejected rule
    # without fixtures (a SigmaHQ folder) is a warning.
    untestable = [r for r in report.rejections
                  if Path(r.path).with_suffix(".tests").is_dir()
                  and (args.rule is None or args.rule in (r.rule_id, Path(r.path).stem))]
    for rejection in report.rejections:
        print(f"{'FAIL' if rejection in untestable else 'warning'}: {rejection}")
    result = run_tests(report, fixture_decoders(), rule_id=args.rule)
    _print_results(result, args.verbose, args.strict)
    if untestable:
        print(f"{_n(len(untestable), 'rule')} with fixtures rejected: their fixtures did not run")
    if args.junit is not None:
        args.junit.write_text(junit_xml(result, args.strict) + "\n", encoding="utf-8")
    if report.errors or untestable or result.failed(args.strict):
        return EXIT_FAILED
    return 0


def _print_results(result: TestReport, verbose: bool, strict: bool) -> None:
    for err in result.errors:
        print(f"ERROR {err.location_text()}")
    rows = [("RESULT", "FILE", "CASE", "ALERTS")]
    for r in result.results:
        if verbose or not r.passed:
            rows.append(("pass" if r.passed else "FAIL", r.file, r.case, str(r.alerts)))
    if len(rows) > 1:
        _table(rows)
    for r in result.results:
        for problem in r.problems:
            print(f"  {r.file} [{r.case}]: {problem}")
    gaps = [c for c in result.coverage if c.status != "tested"]
    for c in gaps:
        label = "FAIL" if strict else "warning"
        what = "no fixtures" if c.status == "untested" else f"{c.status} fixture"
        print(f"{label}: {c.file}: rule {c.rule_id} ({c.title}): {what}")
    passed = sum(1 for r in result.results if r.passed)
    filters = sum(1 for c in result.coverage if c.title.startswith("filter: "))
    tested = _n(len(result.coverage) - filters, "rule") + (
        f" and {_n(filters, 'filter')}" if filters else "")
    print(f"{_n(len(result.results), 'case')}: {passed} passed, "
          f"{len(result.results) - passed} failed; {tested}, {len(gaps)} without positive "
          "and negative fixtures")


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")
