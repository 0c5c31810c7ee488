"""Load rule files into a compiled :class:`~agent.detection.ruleset.Ruleset`, never raising.

Every problem becomes either a :class:`~agent.errors.RuleError` (``file:line: reason``: broken
YAML, invalid Sigma, bad ``vedette:`` options, duplicate ids, unknown references, reference
cycles) or a :class:`Rejection` (a valid rule that needs a logsource, field or feature Vedette
does not provide). The daemon swaps in a new rule set only when the report has no errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaConditionError, SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from agent.alerts import RuleRef
from agent.detection import authoring, correlation_compiler, filters, tuning
from agent.detection.codegen import compile_tree
from agent.detection.fields import lookup
from agent.detection.matcher import (
    Node,
    Tree,
    Unsupported,
    lower_tree,
    referenced_fields,
    simplify,
)
from agent.detection.rule import OPTIONS_KEY, DetectionRule, RuleOptions, Source
from agent.detection.ruleset import Ruleset
from agent.detection.sigma_pipeline import vedette_pipeline
from agent.detection.yamlsafe import RULE_SUFFIXES, Document, read_documents
from agent.errors import RuleError

OWN_RULESET = "vedette"
THIRD_PARTY_LICENSE = "DRL-1.1"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A valid rule Vedette cannot evaluate, and why."""

    path: str
    line: int
    rule_id: str
    title: str
    reason: str
    category: str = "other"
    logsource: tuple[str | None, str | None, str | None] | None = None
    """The Vedette logsource the rule targets, when Vedette produces it."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: rejected {self.rule_id} ({self.title}): {self.reason}"


@dataclass
class LoadReport:
    ruleset: Ruleset
    errors: list[RuleError] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    failed: int = 0
    """Rule documents (or whole files) that could not be loaded."""
    files: int = 0
    overrides: list[str] = field(default_factory=list)
    """``file:line: overrides <id> (first defined at file:line)`` for every local override."""
    internal_alerts: list[Any] = field(default_factory=list)
    """Alerts the agent raises about the load itself (``agent.alerts.Alert``: refused paths)."""
    filters: filters.FilterSet = field(default_factory=filters.FilterSet)
    """Sigma filters (compiled into ``ruleset.tuning``) and notes about them."""

    @property
    def compiled(self) -> int:
        return len(self.ruleset.detections) + len(self.ruleset.correlations)

    @property
    def total(self) -> int:
        return self.compiled + len(self.rejections) + self.failed

    def summary_line(self) -> str:
        line = (f"{_n(self.total, 'rule')}: {self.compiled} compiled, "
                f"{len(self.rejections)} rejected, {_n(len(self.errors), 'error')}")
        if self.filters.filters:
            line += f"; {_n(len(self.filters.filters), 'filter')}"
        return line


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


@dataclass
class _Candidate:
    source: Source
    ruleset: str
    doc: dict[str, Any]
    rule: SigmaRule | SigmaCorrelationRule
    lines: Sequence[str]
    doc_span: tuple[int, int]

    @property
    def rule_id(self) -> str:
        return str(self.rule.id)


def rule_files(path: Path) -> list[Path]:
    """Rule files under ``path`` (a file or a folder; fixture folders ``*.tests`` skipped)."""
    if path.is_file():
        return [path]
    found = [
        p for p in path.rglob("*")
        if p.suffix in RULE_SUFFIXES and p.is_file()
        and not any(part.endswith(".tests") for part in p.relative_to(path).parts[:-1])
    ]
    return sorted(found)


def ruleset_name(path: Path) -> str:
    """Ruleset name of a third-party folder: ``sigmahq`` for SigmaHQ checkouts, else its name."""
    name = path.resolve().name.lower() if path.name else "external"
    return "sigmahq" if "sigma" in name else re.sub(r"[^a-z0-9_.-]", "_", name) or "external"


def load_rules(
    paths: Iterable[Path],
    extra_paths: Iterable[Path] = (),
    *,
    metrics: Any = None,
    local_paths: Iterable[Path] = (),
) -> LoadReport:
    """Load, map, validate and compile every rule under ``paths``, ``extra_paths`` and
    ``local_paths``, in that order. A rule in a local path whose id is already defined by an
    earlier path replaces it (an operator's override); any other duplicate id is an error."""
    loader = _Loader()
    for path in paths:
        loader.load_path(Path(path), OWN_RULESET)
    for path in extra_paths:
        loader.load_path(Path(path), ruleset_name(Path(path)))
    for path in local_paths:
        loader.layer += 1
        loader.load_path(Path(path), OWN_RULESET)
    report = loader.finish()
    if metrics is not None:
        metrics.rule_load_errors.inc(len(report.errors))
        for rejection in report.rejections:
            metrics.rules_rejected.labels(reason=rejection.category).inc()
    return report


class _Loader:
    def __init__(self) -> None:
        self.errors: list[RuleError] = []
        self.rejections: list[Rejection] = []
        self.failed = 0
        self.files = 0
        self.candidates: list[_Candidate] = []
        self.ids: dict[str, Source] = {}
        self.layer = 0
        """0: shipped and third-party paths; each local path (which may override) one more."""
        self.layers: dict[str, int] = {}
        self.overrides: list[str] = []
        self.overridden: set[str] = set()
        self.filter_docs: list[filters.FilterDoc] = []

    # -------------------------------------------------------------- reading

    def load_path(self, path: Path, ruleset: str) -> None:
        if not path.exists():
            self.error(RuleError("no such file or directory", str(path)))
            return
        for file in rule_files(path):
            self.files += 1
            try:
                docs, lines = read_documents(file)
            except RuleError as exc:
                self.error(exc)
                continue
            for doc in docs:
                if doc.data is not None:
                    self.parse_document(file, doc, lines, ruleset)

    def error(self, exc: RuleError) -> None:
        self.errors.append(exc)
        self.failed += 1

    def parse_document(self, file: Path, doc: Document, lines: Sequence[str], ruleset: str) -> None:
        src = str(file)
        if not isinstance(doc.data, dict):
            self.error(RuleError("a rule document must be a mapping", src, doc.line))
            return
        if filters.is_filter(doc.data):  # compiled in finish(), against the loaded rules
            self.filter_docs.append(filters.FilterDoc(file, doc, lines, ruleset))
            return
        if "action" in doc.data:
            self.error(RuleError("multi-document 'action' collections are not supported; "
                                 "write one complete rule per document", src, doc.line))
            return
        try:  # pySigma raises a few non-Sigma errors on odd input: all become rule errors
            collection = SigmaCollection.from_dicts(
                [doc.data], collect_errors=True, resolve_references=False,
                source=SigmaRuleLocation(file),
            )
        except Exception as exc:  # pySigma raises a few non-Sigma errors on odd input
            self.error(RuleError(f"invalid Sigma rule: {exc}", src, doc.line))
            return
        if collection.errors or not collection.rules:
            reasons = [_sigma_reason(e) for e in collection.errors] or ["not a Sigma rule"]
            line = _guess_line(reasons[0], lines, doc, doc.line)
            self.error(RuleError("; ".join(dict.fromkeys(reasons)), src, line))
            return
        rule = collection.rules[0]
        source = Source(src, doc.line)
        if rule.id is None:
            self.error(RuleError("rule has no id (a UUID is required)", src, doc.line))
            return
        rule_id = str(rule.id)
        if rule_id in self.ids and self.layers[rule_id] < self.layer:
            self.overrides.append(f"{source}: overrides {rule_id} (first defined at "
                                  f"{self.ids[rule_id]})")
            self.candidates = [c for c in self.candidates if c.rule_id != rule_id]
            del self.ids[rule_id]
            self.overridden.add(rule_id)
        if rule_id in self.ids:
            self.error(RuleError(f"duplicate rule id {rule_id} (first defined at "
                                 f"{self.ids[rule_id]})", src, doc.line))
            return
        self.ids[rule_id] = source
        self.layers[rule_id] = self.layer
        self.candidates.append(
            _Candidate(source, ruleset, doc.data, rule, lines, (doc.line, doc.end_line))
        )

    # -------------------------------------------------------------- compiling

    def finish(self) -> LoadReport:
        detections: dict[str, DetectionRule] = {}
        rejected: dict[str, str] = {}
        broken: set[str] = set()
        for cand in self.candidates:
            if isinstance(cand.rule, SigmaRule):
                try:
                    compiled = self.compile_detection(cand)
                except RuleError as exc:
                    self.error(exc)
                    broken.add(cand.rule_id)
                    continue
                except Exception as exc:  # never let one odd rule stop the daemon
                    self.error(RuleError(f"cannot compile: {type(exc).__name__}: {exc}",
                                         cand.source.path, cand.source.line))
                    broken.add(cand.rule_id)
                    continue
                if isinstance(compiled, Rejection):
                    self.rejections.append(compiled)
                    rejected[cand.rule_id] = compiled.reason
                else:
                    detections[cand.rule_id] = compiled
        names = {str(c.rule.name): c.rule_id for c in self.candidates if c.rule.name}
        corr_cands = [c for c in self.candidates if isinstance(c.rule, SigmaCorrelationRule)]
        outcome = correlation_compiler.compile_all(
            corr_cands, names, detections, rejected, broken, self.ids, _rule_ref
        )
        for err in outcome.errors:
            self.error(err)
        for rej in outcome.rejections:
            self.rejections.append(Rejection(*rej))
        self.rejections = [r for r in self.rejections if not self._override_rejected(r)]
        silent = set(outcome.silenced)
        final = [replace(d, output=False) if d.id in silent else d for d in detections.values()]
        ruleset = Ruleset(tuple(final), tuple(outcome.correlations))
        rejected_ids = frozenset(r.rule_id for r in self.rejections)
        filter_set = filters.compile_filters(self.filter_docs, ruleset, self.ids, rejected_ids)
        self.errors.extend(filter_set.errors)  # not rule documents: not in self.failed
        if filter_set.filters:
            ruleset = tuning.with_filters(ruleset, filter_set)
        return LoadReport(ruleset, self.errors, self.rejections, self.failed, self.files,
                          self.overrides, filters=filter_set)

    def _override_rejected(self, rej: Rejection) -> bool:
        """A rejected override is an error: it replaced a loaded rule, so neither would run."""
        if rej.rule_id not in self.overridden:
            return False
        self.error(RuleError(f"rejected override of {rej.rule_id} ({rej.title}), so neither it "
                             f"nor the rule it replaces runs: {rej.reason}", rej.path, rej.line))
        return True

    def compile_detection(self, cand: _Candidate) -> DetectionRule | Rejection:
        rule = cand.rule
        assert isinstance(rule, SigmaRule)
        src = cand.source.path
        ls = rule.logsource
        entry = lookup(ls.product, ls.category, ls.service)

        def reject(reason: str, category: str) -> Rejection:
            return Rejection(src, cand.source.line, cand.rule_id, rule.title, reason, category,
                             entry.key if entry is not None else None)

        if entry is None:
            where = "/".join(f"{k}={v}" for k, v in
                             (("product", ls.product), ("category", ls.category),
                              ("service", ls.service)) if v) or "none"
            return reject(f"logsource {where} is not produced by Vedette", "logsource")
        options = self.options(cand)
        try:
            vedette_pipeline().apply(rule)
            trees = [lower_tree(c.parsed) for c in rule.detection.parsed_condition]
        except Unsupported as exc:
            return reject(str(exc), "feature")
        except SigmaError as exc:
            reason = _sigma_reason(exc)
            line = _key_line(cand, "condition")
            if not isinstance(exc, SigmaConditionError):
                line = _guess_line(reason, cand.lines, cand, line)
            raise RuleError(reason, src, line) from None
        tree: Tree = trees[0] if len(trees) == 1 else Node("or", list(trees))
        used = referenced_fields(tree)
        missing = [f for f in used if entry.resolve(f) is None]
        for name in missing if cand.ruleset == OWN_RULESET or entry.product == "vedette" else ():
            hint = authoring.typo(entry, name) if name != "message" else None
            if hint is not None:  # a misspelt field is an error, not a rejection
                at = authoring.field_line(cand.lines, cand.doc_span, name)
                raise RuleError(f"unknown field {name!r} for {entry.key_text} events: {hint}",
                                src, at or _key_line(cand, "detection"))
        if missing:
            what = "keywords need a raw message line, which" if missing == ["message"] else \
                f"needs field(s) {', '.join(missing)}, which"
            return reject(f"{what} {entry.key_text} events do not carry", "field")
        extra: list[str] = []
        for name in (*options.fields, *options.group_by):
            resolved = entry.resolve(name)
            if resolved is None:
                raise RuleError(f"{OPTIONS_KEY}: {name!r} is not a field of {entry.key_text}",
                                src, _key_line(cand, OPTIONS_KEY))
            extra.append(resolved)
        options = replace(options, fields=tuple(extra[: len(options.fields)]),
                          group_by=tuple(extra[len(options.fields):]))
        tree = simplify(tree)
        return DetectionRule(
            ref=_rule_ref(cand),
            name=rule.name,
            source=cand.source,
            logsource=entry.key,
            predicate=compile_tree(tree),
            tree=tree,
            fields=tuple(dict.fromkeys(f for f in used if entry.resolve(f) is not None)),
            options=options,
            content_hash=content_hash(cand.doc, cand.ruleset),
        )

    def options(self, cand: _Candidate) -> RuleOptions:
        try:
            return RuleOptions.from_attribute(cand.rule.custom_attributes.get(OPTIONS_KEY))
        except ValueError as exc:
            line = _key_line(cand, OPTIONS_KEY)
            key = re.search(rf"{OPTIONS_KEY}\.([\w-]+)", str(exc))  # the offending option's line
            if key is not None:
                line = _guess_line(f"'{key.group(1)}:'", cand.lines, replace(
                    cand, doc_span=(line, cand.doc_span[1])), line)
            raise RuleError(str(exc), cand.source.path, line) from None


def content_hash(doc: dict[str, Any], ruleset: str) -> str:
    blob = json.dumps([ruleset, doc], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _rule_ref(cand: _Candidate) -> RuleRef:
    rule = cand.rule
    own = cand.ruleset == OWN_RULESET
    level = rule.level.name.lower() if rule.level is not None else "medium"
    return RuleRef(
        id=cand.rule_id,
        title=rule.title,
        level=level,
        description=(rule.description or "").strip(),
        author=(rule.author or "").strip(),
        references=tuple(str(r) for r in rule.references),
        tags=tuple(str(t) for t in rule.tags),
        ruleset=cand.ruleset,
        version=str(rule.modified or rule.date or "1"),
        license=rule.license or ("" if own else THIRD_PARTY_LICENSE),
    )


def _sigma_reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, SigmaError) and exc.args else str(exc)
    return authoring.explain(re.sub(r"\s+in \S+\.ya?ml$", "", text.strip())
                             or type(exc).__name__)


def _key_line(cand: _Candidate, key: str) -> int:
    start, end = cand.doc_span
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
    for i in range(start - 1, min(end, len(cand.lines))):
        if pattern.match(cand.lines[i]):
            return i + 1
    return start


def _guess_line(reason: str, lines: Sequence[str], where: Any, default: int) -> int:
    """Best line for an error: where a quoted token of the message first appears in the doc."""
    span = getattr(where, "doc_span", None) or (where.line, where.end_line)
    tokens = [t for t in re.findall(r"'([^']{1,200})'", reason) if t.strip()]
    for token in tokens:
        for i in range(span[0] - 1, min(span[1], len(lines))):
            if token in lines[i]:
                return i + 1
    if "condition" in reason.lower():
        for i in range(span[0] - 1, min(span[1], len(lines))):
            if lines[i].lstrip().startswith("condition"):
                return i + 1
    key = authoring.reason_key(reason)  # e.g. "No detections defined": the detection key
    if key is not None:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
        for i in range(span[0] - 1, min(span[1], len(lines))):
            if pattern.match(lines[i]):
                return i + 1
    return default
