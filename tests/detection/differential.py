"""The differential oracle: pySigma-backend-sqlite's queries, run by SQLite, against the engine.

Used by ``test_differential.py``. For every rule the engine compiled, the same rule file is
parsed again by pySigma, mapped with Vedette's field pipeline (configuration, not semantics)
and converted to SQL by the sqlite backend — an evaluator this project did not write. Events are
generated from the rule's own values (case flips, prefixes/suffixes, wildcard fillers, escaped
wildcards, numbers as text, ± 1 around comparisons, inside/outside CIDRs, absent fields) and
put in a table; a pair (rule, event) agrees when the row is selected exactly when the engine's
compiled predicate matches.

Known differences of the oracle, each checked by re-running the oracle on a transformed event
(a disagreement is *explained* only if the transformation makes the oracle agree):

* ``ascii-folding``: SQLite's LIKE and NOCASE fold ASCII letters only; the engine folds Unicode
  (``str.lower()``): explained if the oracle agrees once the event's text is lower- or
  upper-cased.
* ``coercion``: SQLite never compares text with numbers (``'5' > 3`` is true, ``6 = '6'`` is
  false); the engine reads numeric text as a number and numbers as their text: explained if the
  oracle agrees once numbers are stored as text or numeric text as numbers.
* ``numeric-text``: text that Python's ``float()`` reads but that is no decimal number to the
  engine (``' 5 '``, ``'-inf'``) is text, which SQLite sorts above every number: explained if
  the oracle agrees once such values are absent (neither is a number).
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from agent.detection import LoadReport
from agent.detection.codegen import number
from agent.detection.match_cache import RouteState
from agent.detection.matcher import Lowered
from agent.detection.sigma_pipeline import vedette_pipeline
from agent.events import LogSource

ABSENT = object()
MAX_EVENTS = 120


@dataclass
class Figures:
    rules: int = 0
    pairs: int = 0
    agree: int = 0
    matches: int = 0
    oracle_matches: int = 0
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    unconvertible: list[str] = field(default_factory=list)
    index_misses: list[str] = field(default_factory=list)

    def summary(self) -> str:
        pct = 100.0 * self.agree / self.pairs if self.pairs else 0.0
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.explained.items()))
        return (f"differential: {self.rules} rules, {self.pairs} (rule, event) pairs, "
                f"{self.matches} engine / {self.oracle_matches} oracle matches; agree "
                f"{self.agree} ({pct:.3f} %); explained "
                f"differences: {parts or 'none'}; unexplained {len(self.unexplained)}; rules "
                f"the oracle cannot convert {len(self.unconvertible)}; index misses "
                f"{len(self.index_misses)}")


# --------------------------------------------------------------------------- values


def _plain(s: SigmaString, single: str = "x", multi: str = "") -> str:
    out = []
    for part in s.s:
        if part is SpecialChars.WILDCARD_MULTI:
            out.append(multi)
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(single)
        elif isinstance(part, str):
            out.append(part)
    return "".join(out)


def _string_variants(s: SigmaString) -> list[Any]:
    base = _plain(s)
    out: list[Any] = [base, _plain(s, "Q", "abc"), base.upper(), base.swapcase(),
                      "x" + base, base + "x", " " + base + " ", base[:-1], base[1:],
                      _plain(s, "xy", "*"), _plain(s, "", "")]
    if base.strip().lstrip("-").isdigit():
        out.append(int(base))
    return out


def _number_variants(n: float) -> list[Any]:
    i = int(n) if float(n).is_integer() else n
    return [i, i + 1, i - 1, str(i), f" {i} "]


def _cidr_variants(c: SigmaCIDRExpression) -> list[Any]:
    net = c.network
    first = net.network_address
    inside = first + (1 if net.num_addresses > 2 else 0)
    outside = net.broadcast_address + 1 if int(net.broadcast_address) < (
        2**net.max_prefixlen - 1) else first - 1
    return [str(inside), str(outside), str(first), "not an ip"]


def _regex_variants(r: SigmaRegularExpression) -> list[Any]:
    text = str(r.regexp)
    stripped = "".join(ch for ch in text if ch.isalnum() or ch in " /-_.:=")
    return [stripped, stripped.upper(), text]


def value_variants(value: Any) -> list[Any]:
    """Candidate event values derived from one Sigma value (matching and near misses)."""
    if isinstance(value, SigmaExpansion):
        return [v for inner in value.values for v in value_variants(inner)][:12]
    if isinstance(value, SigmaString):
        return _string_variants(value)
    if isinstance(value, SigmaBool):
        return ["true" if value.boolean else "false", value.boolean, not value.boolean]
    if isinstance(value, SigmaNumber):
        return _number_variants(value.number)
    if isinstance(value, SigmaCompareExpression):
        return _number_variants(value.number.number)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr_variants(value)
    if isinstance(value, SigmaRegularExpression):
        return _regex_variants(value)
    if isinstance(value, SigmaNull | SigmaExists):
        return ["", "x"]
    return []


# --------------------------------------------------------------------------- events


def _items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from _items(item)
        else:
            yield item


def generate(rule: SigmaRule, rnd: random.Random) -> list[dict[str, Any]]:
    """Events built from the rule's own values: whole selections, then mutations of each."""
    pools: dict[str, list[Any]] = {}
    refs: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    for detection in rule.detection.detections.values():
        row: dict[str, Any] = {}
        for item in _items(detection):
            name = item.field or "message"
            for value in item.value:
                if isinstance(value, SigmaFieldReference):
                    refs.append((name, value.field))
                    continue
                variants = value_variants(value)
                if item.field is None:  # keywords: inside a message line
                    variants = [f"pre {v} post" for v in variants] + [
                        f'a1="{v}"' for v in variants[:3]] + variants[:2]
                pools.setdefault(name, []).extend(variants)
                if name not in row and variants:
                    row[name] = variants[0]
        rows.append(row)
    for name, other in refs:
        pools.setdefault(name, []).append("ref")
        pools.setdefault(other, []).append("/usr/bin/ref")
    events: list[dict[str, Any]] = []
    base: dict[str, Any] = {}
    for row in rows:
        base.update(row)
    words = [str(r["message"]) for r in rows if "message" in r]
    if words:  # keywords of several selections in one line, as a log line has them
        base["message"] = " ".join(words)
        pools["message"] += [base["message"], base["message"].upper()] + [
            f"{base['message']} {v}" for v in pools["message"][:6]]
    others = {k: v for k, v in base.items() if k != "message"}
    for row in rows:
        events.append(dict(row))
        events.append({**base, **row})
        events.append({**others, **row})
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]][:20]
    for a, b in pairs:  # two selections together (``a and b``), keywords in one line
        both = {**others, **a, **b}
        if "message" in a and "message" in b:
            both["message"] = f"{a['message']} {b['message']}"
        events.append(both)
    for name, pool in pools.items():
        for variant in pool[:10]:
            events.append({**base, name: variant})
        events.append({k: v for k, v in base.items() if k != name})
    for name, other in refs:
        value = base.get(other, "/usr/bin/curl")
        text = str(value)
        for mine in (text, text.upper(), f"sudo {text} x", f"{text} x", f"x {text}"):
            events.append({**base, other: text, name: mine})
    while len(events) < MAX_EVENTS and pools:
        events.append({n: rnd.choice(p) for n, p in pools.items() if rnd.random() < 0.8})
    rnd.shuffle(events)
    return [{k: v for k, v in e.items() if v is not ABSENT} for e in events[: MAX_EVENTS * 2]]


# --------------------------------------------------------------------------- oracle


def _regexp(pattern: str, value: Any) -> bool:
    if value is None:
        return False
    try:
        return re2.search(pattern, str(value)) is not None
    except Exception:
        return False


class Oracle:
    """One rule's SQL query over a table of events (in-memory SQLite)."""

    def __init__(self, rule: SigmaRule) -> None:
        backend = sqliteBackend(fulltext_field="message", collate_nocase=True)
        self.queries = [q.replace("SELECT * FROM logs WHERE", "SELECT rowid FROM logs WHERE", 1)
                        for q in backend.convert_rule(rule)]
        self.fields = sorted(set(backend.required_fields(rule)) | {"message"})
        self.db = sqlite3.connect(":memory:")
        self.db.create_function("REGEXP", 2, _regexp, deterministic=True)

    def matches(self, events: list[dict[str, Any]]) -> list[bool]:
        cols = ", ".join(f'"{f}"' for f in self.fields)
        self.db.execute("DROP TABLE IF EXISTS logs")
        self.db.execute(f"CREATE TABLE logs ({cols})")
        marks = ", ".join("?" for _ in self.fields)
        self.db.executemany(
            f"INSERT INTO logs (rowid, {cols}) VALUES (?, {marks})",
            [(i + 1, *(_sql(e.get(f)) for f in self.fields)) for i, e in enumerate(events)])
        hit: set[int] = set()
        for query in self.queries:
            hit.update(r[0] for r in self.db.execute(query))
        return [i + 1 in hit for i in range(len(events))]


def _sql(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _numbers_as_text(e: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
            for k, v in e.items()}


def _text_as_numbers(e: dict[str, Any]) -> dict[str, Any]:
    def num(v: Any) -> Any:
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                return v
            return int(f) if f.is_integer() and math.isfinite(f) else f
        return v
    return {k: num(v) for k, v in e.items()}


def _loose_numbers_absent(e: dict[str, Any]) -> dict[str, Any]:
    """Text Python's float() reads but the engine does not take for a number (' 5 ', '1_0',
    '-inf'; docs/rules.md) is text to the engine, and SQLite sorts any text above every number:
    such values compared to numbers are simply not numbers, as an absent field is not."""
    return {k: v for k, v in e.items() if not (isinstance(v, str) and _loose(v))}


def _loose(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return number(v) is None


def _cased(fn: Callable[[str], str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda e: {k: (fn(v) if isinstance(v, str) else v) for k, v in e.items()}


EXPLANATIONS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], Callable[[Any], bool]]]
EXPLANATIONS = [
    ("ascii-folding", _cased(str.lower), lambda e: _non_ascii(e)),
    ("ascii-folding", _cased(str.upper), lambda e: _non_ascii(e)),
    ("coercion", _numbers_as_text, lambda e: True),
    ("coercion", _text_as_numbers, lambda e: True),
    ("numeric-text", _loose_numbers_absent,
     lambda e: any(isinstance(v, str) and _loose(v) for v in e.values())),
]


def _non_ascii(e: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and not v.isascii() for v in e.values())


# --------------------------------------------------------------------------- driver


def sigma_rules(paths: list[Path]) -> dict[str, SigmaRule]:
    """Every detection rule of ``paths`` by id, parsed afresh and field-mapped."""
    out: dict[str, SigmaRule] = {}
    for root in paths:
        for path in sorted(root.rglob("*.yml")):
            try:
                collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
            except Exception:
                continue
            for rule in collection.rules:
                if isinstance(rule, SigmaRule) and rule.id is not None:
                    out[str(rule.id)] = rule
    return out


def run(report: LoadReport, paths: list[Path], seed: int = 14) -> Figures:
    figures = Figures()
    parsed = sigma_rules(paths)
    rnd = random.Random(seed)
    for det in report.ruleset.detections:
        source = parsed.get(det.id)
        if source is None:
            continue
        figures.rules += 1
        try:
            oracle = Oracle(_mapped(source))
        except Exception as exc:
            figures.unconvertible.append(f"{det.id} {det.ref.title}: {exc}")
            continue
        events = generate(_mapped(source), rnd)
        truth = oracle.matches(events)
        route = RouteState(report.ruleset.route(LogSource(*det.logsource)))
        for event, want in zip(events, truth, strict=True):
            figures.pairs += 1
            got = bool(det.predicate(event, Lowered(event)))
            figures.matches += got
            figures.oracle_matches += want
            if got and all(c is not det for c in route.candidates(Lowered(event))):
                figures.index_misses.append(f"{det.id} {det.ref.title}: {event!r}")
            if got == want:
                figures.agree += 1
                continue
            why = _explain(oracle, event, got)
            if why:
                figures.explained[why] += 1
            else:
                figures.unexplained.append(
                    f"{det.id} {det.ref.title} ({det.source}): engine {got}, oracle {want}: "
                    f"{event!r}")
    return figures


def _mapped(rule: SigmaRule) -> SigmaRule:
    copy = SigmaRule.from_dict(rule.to_dict())
    vedette_pipeline().apply(copy)
    return copy


def _explain(oracle: Oracle, event: dict[str, Any], got: bool) -> str | None:
    for name, transform, applies in EXPLANATIONS:
        if applies(event) and oracle.matches([transform(event)])[0] == got:
            return name
    return None

