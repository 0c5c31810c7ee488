"""``expect.yml``: the cases of a rule file's fixtures, parsed with the line of every problem.

The format is described in :mod:`agent.detection.fixtures` and docs/rules.md. Unknown keys of a
case or of an expectation are errors (a typo such as ``flsh: false`` must not silently change
what a case tests), and every error names the line of the key it is about.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.detection.rule import Rule
from agent.detection.yamlsafe import read_documents
from agent.errors import RuleError
from agent.events import parse_timestamp

EXPECT_FILE = "expect.yml"


def tests_dir(rule_file: Path) -> Path:
    return rule_file.with_name(rule_file.stem + ".tests")


@dataclass
class Expectation:
    rule: str
    group: dict[str, Any] | None = None
    count: int | None = None
    min_count: int | None = None
    at: float | None = None
    tolerance: float = 1.0


@dataclass
class Case:
    name: str
    input: Path
    kind: str
    expect: list[Expectation]
    flush: bool = True
    """Run the timers past the last event (close alerts, fire lt/lte windows)."""


CASE_KEYS = frozenset({"name", "input", "kind", "expect", "flush"})
EXPECT_KEYS = frozenset({"rule", "group", "count", "min_count", "at", "tolerance"})


def load_cases(rule_file: Path, rules: list[Rule], kinds: Collection[str]) -> list[Case]:
    """Parse ``<name>.tests/expect.yml``; :class:`RuleError` (with the line) on any problem."""
    folder = tests_dir(rule_file)
    expect = folder / EXPECT_FILE
    if not expect.is_file():
        return []
    docs, lines = read_documents(expect)
    data = docs[0].data if docs else None
    src = str(expect)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise RuleError("expect.yml needs a 'cases' list", src, 1)
    where = _Lines(lines)
    names = {r.name: r.id for r in rules if r.name} | {r.id: r.id for r in rules}
    default = rules[-1].id if rules else ""
    cases = []
    for i, raw in enumerate(data["cases"], 1):
        at = where.item(i)
        if not isinstance(raw, dict) or "input" not in raw:
            raise RuleError(f"case {i}: needs at least 'input' (and 'expect')", src, at)
        unknown = sorted(set(map(str, raw)) - CASE_KEYS)
        if unknown:
            raise RuleError(f"case {i}: unknown key {unknown[0]!r} (valid: "
                            f"{', '.join(sorted(CASE_KEYS))})", src, where.key(unknown[0], at))
        name = str(raw.get("name", f"case {i}"))
        inp = folder / str(raw["input"])
        kind = str(raw.get("kind") or inp.suffix.lstrip("."))
        if kind not in kinds:
            raise RuleError(f"case {name!r}: unknown input kind {kind!r} "
                            f"(registered: {', '.join(sorted(kinds))})", src,
                            where.key("kind" if "kind" in raw else "input", at))
        if not inp.is_file() or folder.resolve() not in inp.resolve().parents:
            raise RuleError(f"case {name!r}: input {raw['input']!r} not found in {folder}", src,
                            where.key("input", at))
        if not isinstance(raw.get("expect") or [], list):
            raise RuleError(f"case {name!r}: 'expect' must be a list of alerts ([] for none)",
                            src, where.key("expect", at))
        exps = []
        for e in raw.get("expect") or []:
            e_at = where.expectation(at)
            if not isinstance(e, dict):
                raise RuleError(f"case {name!r}: each expectation is a mapping", src, e_at)
            ref = str(e.get("rule", default))
            if ref not in names:
                raise RuleError(f"case {name!r}: rule {ref!r} is not defined in {rule_file.name}",
                                src, where.key("rule", e_at))
            unknown = sorted(set(map(str, e)) - EXPECT_KEYS)
            if unknown:
                raise RuleError(f"case {name!r}: unknown key {unknown[0]!r} in an expectation "
                                f"(valid: {', '.join(sorted(EXPECT_KEYS))})", src,
                                where.key(unknown[0], e_at))
            try:
                when = parse_timestamp(e["at"]) if "at" in e else None
            except ValueError:
                raise RuleError(f"case {name!r}: 'at' must be an RFC 3339 time such as "
                                f"\"2026-01-01T00:00:50Z\", not {e['at']!r}", src,
                                where.key("at", e_at)) from None
            try:
                tolerance = float(e.get("tolerance", 1.0))
            except (TypeError, ValueError):
                raise RuleError(f"case {name!r}: 'tolerance' must be a number of seconds", src,
                                where.key("tolerance", e_at)) from None
            exps.append(Expectation(names[ref], e.get("group"), e.get("count"),
                                    e.get("min_count"), when, tolerance))
        cases.append(Case(name, inp, kind, exps, bool(raw.get("flush", True))))
    return cases


class _Lines:
    """Approximate lines of cases, expectations and keys in expect.yml, for error messages.

    Reads the text, not the YAML tree: a case starts at a ``- `` item of the ``cases`` list's
    indentation, a key is the next ``key:`` after a given line.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.items: list[int] = []
        indent = None
        inside = False
        for n, line in enumerate(lines, 1):
            stripped = line.lstrip()
            if not inside:
                inside = stripped.startswith("cases:")
                continue
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("- "):
                col = len(line) - len(stripped)
                indent = col if indent is None else indent
                if col == indent:
                    self.items.append(n)
        self._cursor = 0

    def item(self, i: int) -> int:
        self._cursor = self.items[i - 1] if i - 1 < len(self.items) else 1
        return self._cursor

    def expectation(self, case_line: int) -> int:
        """The next list item after the previous expectation (or the case's ``expect:``)."""
        start = max(self._cursor, case_line)
        for n in range(start + 1, len(self.lines) + 1):
            text = self.lines[n - 1].lstrip()
            if text.startswith("- ") and n not in self.items:
                self._cursor = n
                return n
            if n in self.items:
                break
        return case_line

    def key(self, key: str, from_line: int) -> int:
        pattern = re.compile(rf"(^|[\s{{,-])['\"]?{re.escape(key)}['\"]?\s*:")
        for n in range(from_line, len(self.lines) + 1):
            if n != from_line and n in self.items:
                break
            if pattern.search(self.lines[n - 1]):
                return n
        return from_line
