"""Rule tests: run each rule's fixtures through the production engine on a virtual clock.

Layout: ``rules/<area>/<name>.yml`` and, next to it, ``rules/<area>/<name>.tests/`` holding
``expect.yml`` plus input files. ``expect.yml``::

    cases:
      - name: five busy minutes fire once
        input: busy.jsonl            # decoded by the registry below (kind from the extension,
        kind: jsonl                  # or given explicitly)
        expect:
          - rule: host_cpu_saturation       # id or name; default: the file's last rule
            group: {host.name: web-1}       # exact group-by values (optional)
            count: 8                        # final alert count (optional; or min_count)
            at: "2026-01-01T00:01:00Z"      # when the alert opened (optional) ...
            tolerance: 10                   # ... within this many seconds (default 1)
      - name: a single spike stays silent
        input: spike.jsonl
        expect: []                          # no alert of this file's rules
        flush: false                        # optional: stop the clock at the last event

Event timestamps drive time: before each event the engine's timers run up to that event's time,
and after the last one far enough ahead to close every alert. Every alert a file's rules open
must be expected; alerts of other rules are ignored. A rule has a positive fixture when some
case expects it and a negative one when some case expects it to stay silent.

Inputs are decoded by the caller's decoders (``kind → decoder(path)`` yielding
:class:`~agent.events.Event` objects; ``vedette rules test`` passes every offline input kind of
:func:`agent.offline.inputs.fixture_decoders`): detection reads no file format itself and
imports nothing above it (``tests/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.alerts import Alert, Status
from agent.detection.engine import Engine, EngineOptions
from agent.detection.expect_file import Case, load_cases
from agent.detection.filters import CompiledFilter
from agent.detection.loader import LoadReport
from agent.detection.rule import CorrelationRule, Rule
from agent.detection.ruleset import Ruleset
from agent.detection.tuning import with_filters
from agent.errors import RuleError
from agent.events import Event, format_timestamp

Decoder = Callable[[Path], Iterator[Event]]
Decoders = Mapping[str, Decoder]
MAX_FIXTURE_EVENTS = 1_000_000


@dataclass
class CaseResult:
    file: str
    case: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    alerts: int = 0


@dataclass
class Coverage:
    rule_id: str
    title: str
    file: str
    positive: bool
    negative: bool

    @property
    def status(self) -> str:
        if self.positive and self.negative:
            return "tested"
        if not self.positive and not self.negative:
            return "untested"
        return "no negative" if self.positive else "no positive"


@dataclass
class TestReport:
    results: list[CaseResult] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)

    def failed(self, strict: bool) -> bool:
        if self.errors or any(not r.passed for r in self.results):
            return True
        return strict and any(c.status != "tested" for c in self.coverage)


def rules_by_file(report: LoadReport) -> dict[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for rule in report.ruleset.rules():
        out.setdefault(rule.source.path, []).append(rule)
    for rules in out.values():
        rules.sort(key=lambda r: r.source.line)
    return out


def run_case(
    engine: Engine, case: Case, horizon: float, decoders: Decoders,
) -> list[tuple[float, Alert]]:
    """Feed a case's events; returns every alert snapshot with the virtual time it was sent."""
    sent: list[tuple[float, Alert]] = []
    clock = None
    for n, event in enumerate(decoders[case.kind](case.input)):
        if n >= MAX_FIXTURE_EVENTS:
            raise RuleError(f"more than {MAX_FIXTURE_EVENTS} events", str(case.input))
        if clock is None or event.timestamp > clock:
            clock = event.timestamp
            sent.extend((clock, a) for a in engine.advance(clock))
        sent.extend((clock, a) for a in engine.process(event))
    if clock is not None and case.flush:
        end = clock + horizon
        while clock < end:  # one-second ticks, like the daemon
            clock = min(clock + 1.0, end)
            sent.extend((clock, a) for a in engine.advance(clock))
    return sent


def check_case(
    case: Case, file_rules: set[str], sent: list[tuple[float, Alert]],
    titles: dict[str, str] | None = None,
) -> list[str]:
    titles = titles or {}

    def rule(rule_id: str) -> str:
        title = titles.get(rule_id)
        return f"{title!r} ({rule_id})" if title else rule_id

    opened: dict[str, tuple[float, Alert]] = {}
    final: dict[str, Alert] = {}
    for when, alert in sent:
        if alert.rule.id not in file_rules:
            continue
        if alert.status is Status.OPEN:
            opened[alert.id] = (when, alert)
        final[alert.id] = alert
    problems = []
    unmatched = dict(opened)
    for exp in case.expect:
        hit = None
        for alert_id, (_, alert) in unmatched.items():
            if alert.rule.id != exp.rule:
                continue
            if exp.group is not None and {k: str(v) for k, v in alert.group.items()} != {
                    k: str(v) for k, v in exp.group.items()}:
                continue
            hit = alert_id
            break
        if hit is None:
            group = f" group={exp.group}" if exp.group is not None else ""
            problems.append(f"expected an alert of {rule(exp.rule)}{group}: none was raised")
            continue
        when, alert = unmatched.pop(hit)
        count = final[hit].count
        if exp.count is not None and count != exp.count:
            problems.append(f"{rule(exp.rule)}: count {count}, expected {exp.count}")
        if exp.min_count is not None and count < exp.min_count:
            problems.append(f"{rule(exp.rule)}: count {count}, expected at least "
                            f"{exp.min_count}")
        if exp.at is not None and abs(when - exp.at) > exp.tolerance:
            problems.append(f"{rule(exp.rule)}: fired at {format_timestamp(when)}, expected "
                            f"{format_timestamp(exp.at)} ± {exp.tolerance:g} s")
    for when, alert in unmatched.values():
        problems.append(f"unexpected alert of {alert.rule.title!r} ({alert.rule.id}) "
                        f"group={alert.group} at {format_timestamp(when)}")
    return problems


def horizon(report: LoadReport, late: float) -> float:
    spans = [r.options.quiet_period + (r.timespan if isinstance(r, CorrelationRule) else 0.0)
             for r in report.ruleset.rules()]
    return max(spans, default=0.0) + late + 1.0


def run_tests(
    report: LoadReport, decoders: Decoders, rule_id: str | None = None,
    options: EngineOptions | None = None, own_only: bool = True, execute: bool = True,
) -> TestReport:
    """Run every fixture of the loaded rules (optionally only files defining ``rule_id``),
    reading each case's input with ``decoders[case.kind]``.

    ``execute=False`` only reads the expectations: fixture coverage without running anything.
    """
    options = options or EngineOptions()
    out = TestReport()
    span = horizon(report, options.late_allowance_seconds)
    # a rule's fixtures test the rule: local filters (tested by their own fixtures) stay out
    bare = Ruleset(report.ruleset.detections, report.ruleset.correlations)
    for file, rules in sorted(rules_by_file(report).items()):
        if own_only and all(r.ref.ruleset != "vedette" for r in rules):
            continue
        if rule_id is not None and all(rule_id not in (r.id, r.name) for r in rules):
            continue
        alerting = [r for r in rules if getattr(r, "output", True)]
        try:
            cases = load_cases(Path(file), rules, decoders)
        except RuleError as exc:
            out.errors.append(exc)
            cases = []
        positive: set[str] = set()
        negative: set[str] = set()
        ids = {r.id for r in alerting}
        titles = {r.id: r.ref.title for r in rules}
        for case in cases:
            if not execute:
                expected = {e.rule for e in case.expect}
                positive |= expected
                negative |= ids - expected
                continue
            try:
                sent = run_case(Engine(bare, None, options), case, span, decoders)
            except Exception as exc:  # a decoder refusing its input fails the case, not the run
                reason = exc.location_text() if isinstance(exc, RuleError) else (
                    f"{case.input}: {type(exc).__name__}: {exc}")
                out.results.append(CaseResult(file, case.name, False, [reason]))
                continue
            problems = check_case(case, ids, sent, titles)
            expected = {e.rule for e in case.expect}
            positive |= expected
            negative |= ids - expected
            opened = sum(1 for _, a in sent if a.status is Status.OPEN and a.rule.id in ids)
            out.results.append(CaseResult(file, case.name, not problems, problems, opened))
        for rule in alerting:
            out.coverage.append(Coverage(rule.id, rule.ref.title, file, rule.id in positive,
                                         rule.id in negative))
    _run_filter_tests(report, decoders, out, rule_id, options, span, execute)
    return out


def _run_filter_tests(
    report: LoadReport, decoders: Decoders, out: TestReport, rule_id: str | None,
    options: EngineOptions, span: float, execute: bool,
) -> None:
    """Fixtures of filter files: each case runs with and without the file's filters.

    A filter is *positive*-tested by a case in which it silences an alert its rules raise
    without it, and *negative*-tested by a case in which one of its rules still alerts.
    """
    by_file: dict[str, list[CompiledFilter]] = {}
    for flt in report.filters.filters:
        if flt.ruleset == "vedette":
            by_file.setdefault(flt.source.path, []).append(flt)
    ruleset = report.ruleset
    for file, flts in sorted(by_file.items()):
        targets = {rid for f in flts for rid in f.targets}
        rules: list[Rule] = [r for r in ruleset.detections if r.id in targets and r.output]
        rules += [c for c in ruleset.correlations if targets & set(c.rules)]
        if rule_id is not None and all(rule_id not in (r.id, r.name) for r in rules) \
                and all(rule_id != f.id for f in flts):
            continue
        try:
            cases = load_cases(Path(file), rules, decoders)
        except RuleError as exc:
            out.errors.append(exc)
            cases = []
        ids = {r.id for r in rules}
        unfiltered = with_filters(ruleset, report.filters, frozenset(f.id for f in flts))
        silences = lets_through = bool(cases) and not execute  # unexecuted: has cases
        for case in cases if execute else []:
            try:
                sent = run_case(Engine(ruleset, None, options), case, span, decoders)
                bare = run_case(Engine(unfiltered, None, options), case, span, decoders)
            except Exception as exc:  # a decoder refusing its input fails the case
                reason = exc.location_text() if isinstance(exc, RuleError) else (
                    f"{case.input}: {type(exc).__name__}: {exc}")
                out.results.append(CaseResult(file, case.name, False, [reason]))
                continue
            problems = check_case(case, ids, sent, {r.id: r.ref.title for r in rules})
            opened = sum(1 for _, a in sent if a.status is Status.OPEN and a.rule.id in ids)
            without = sum(1 for _, a in bare if a.status is Status.OPEN and a.rule.id in ids)
            silences |= without > opened
            lets_through |= opened > 0
            out.results.append(CaseResult(file, case.name, not problems, problems, opened))
        for flt in flts:
            out.coverage.append(Coverage(flt.id, f"filter: {flt.title}", file, silences,
                                         lets_through))


def junit_xml(report: TestReport, strict: bool = False) -> str:
    """The results as a JUnit XML document: one testcase per fixture case, plus (``strict``)
    one failing testcase per rule without a positive and a negative fixture."""
    from xml.etree import ElementTree as ET  # noqa: PLC0415 - only for --junit

    gaps = [c for c in report.coverage if c.status != "tested"] if strict else []
    failures = sum(1 for r in report.results if not r.passed) + len(gaps)
    suite = ET.Element("testsuite", name="vedette-rules",
                       tests=str(len(report.results) + len(gaps)),
                       failures=str(failures), errors=str(len(report.errors)))
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=r.file, name=r.case)
        if not r.passed:
            ET.SubElement(case, "failure", message=r.problems[0][:200]).text = "\n".join(
                r.problems)
    for gap in gaps:
        case = ET.SubElement(suite, "testcase", classname=gap.file, name=f"fixtures {gap.rule_id}")
        ET.SubElement(case, "failure", message=f"{gap.title}: {gap.status}")
    for err in report.errors:
        case = ET.SubElement(suite, "testcase", classname=err.path or "", name="load")
        ET.SubElement(case, "error", message=err.reason[:200]).text = str(err)
    return ET.tostring(suite, encoding="unicode")
