"""Literals that every match of an RE2 pattern must contain: the candidate index of ``|re``.

The routing index (:mod:`agent.detection.ruleset`) only shows a rule an event whose lowered
field contains one of the rule's literals, so the literals must be sound *by construction*:
every string RE2 matches contains (after ``str.lower()``) at least one of them. Reading the
pattern with another regex dialect's parser is not sound (Python reads ``[[:digit:]]`` as a set
followed by ``]``), so this module has its own parser of a deliberately small subset of RE2's
syntax, whose meaning it knows exactly; a pattern using anything else gets no literals (the rule
is then evaluated on every event of its logsource — slower, never wrong).

The subset: plain characters, ``\\`` + ASCII punctuation, ``.``, ``^``, ``$``, ``\\d \\D \\w \\W
\\s \\S \\b \\B \\A \\z \\n \\t \\r \\f \\v``, bracket classes without ``[`` inside (so no POSIX
``[:digit:]``), groups ``(...)``, ``(?:...)``, ``(?P<n>...)``, ``(?<n>...)``, flag groups
``(?flags)`` / ``(?flags:...)``, alternation and the quantifiers ``* + ? {n} {n,} {n,m}``
(optionally lazy).

Case: literals are lower-cased, as the index lowers the field. Only ASCII characters become
literals (``str.lower()`` of ASCII is per character, so a match's lowered text contains the
literal's lowered text). When the pattern may ignore case, RE2 matches a character's whole
Unicode simple-folding orbit: for ASCII that adds only U+212A (Kelvin sign, which lowers to
``k``) and U+017F (long s, which does *not* lower to ``s``), so ``s``/``S`` are never literals
of a case-insensitive pattern. ``tests/detection/test_regex_literals.py`` checks that claim
against the installed RE2 over every code point.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

MAX_ALTERNATIVES = 16
_PUNCT = frozenset(string.punctuation)
_SPECIAL = frozenset("\\.^$|?*+()[]{}")
_OPAQUE_ESCAPES = frozenset("dDwWsSbBAzntrfv")
_CI_UNSAFE = frozenset("sS")  # folds with U+017F, which str.lower() leaves as is
_MAY_IGNORE_CASE = re.compile(r"\(\?[a-zA-Z-]*i")
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")


class _Unsupported(Exception):
    """Syntax outside the subset this parser knows: no literals for this pattern."""


@dataclass(slots=True)
class _Info:
    exact: frozenset[str] | None  # the node matches exactly one of these strings
    required: frozenset[str] | None  # every match contains one of these


_OPAQUE = _Info(None, None)
_EMPTY = _Info(frozenset({""}), None)


def regex_literals(pattern: str) -> frozenset[str] | None:
    """Lower-cased strings (at least 2 characters) one of which every match contains, or None."""
    try:
        parser = _Parser(pattern, bool(_MAY_IGNORE_CASE.search(pattern)))
        info = parser.alternation()
        if parser.pos != len(pattern):
            raise _Unsupported("unbalanced ')'")
    except (_Unsupported, RecursionError):
        return None
    best = _better(info.required, info.exact)
    return best if best and min(map(len, best)) >= 2 else None


def _better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """The more selective of two literal sets: the longer shortest alternative."""
    if not a:
        return b or None
    if not b:
        return a
    return b if min(map(len, b)) > min(map(len, a)) else a


class _Parser:
    def __init__(self, pattern: str, ignore_case: bool) -> None:
        self.p = pattern
        self.pos = 0
        self.ci = ignore_case

    def _peek(self) -> str | None:
        return self.p[self.pos] if self.pos < len(self.p) else None

    def alternation(self) -> _Info:
        branches = [self.sequence()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self.sequence())
        if len(branches) == 1:
            return branches[0]
        exact: frozenset[str] | None = None
        if all(b.exact is not None for b in branches):
            exact = frozenset().union(*(b.exact for b in branches if b.exact is not None))
            if len(exact) > MAX_ALTERNATIVES:
                exact = None
        required: frozenset[str] | None = None
        picks = [_better(b.required, b.exact) for b in branches]
        if all(picks):
            union = frozenset().union(*(p for p in picks if p))
            if len(union) <= MAX_ALTERNATIVES and "" not in union:
                required = union
        return _Info(exact, required)

    def sequence(self) -> _Info:
        run: frozenset[str] | None = frozenset({""})
        best: frozenset[str] | None = None
        exact_so_far = True
        while (c := self._peek()) is not None and c not in "|)":
            atom = self.atom()
            low, high = self.quantifier()
            if low == high == 1 and atom.exact is not None and run is not None:
                crossed = frozenset(r + e for r in run for e in atom.exact)
                if len(crossed) <= MAX_ALTERNATIVES:
                    run = crossed
                    continue
            exact_so_far = False
            if low >= 1:  # required at least once
                if atom.exact is not None and run is not None:
                    crossed = frozenset(r + e for r in run for e in atom.exact)
                    if len(crossed) <= MAX_ALTERNATIVES:
                        run = crossed
                best = _better(best, atom.required)
            best = _better(best, run)
            run = frozenset({""})
            if low >= 1 and atom.exact is not None:
                best = _better(best, atom.exact)
        if exact_so_far:
            return _Info(run, None)
        return _Info(None, _better(best, run))

    def quantifier(self) -> tuple[int, int | None]:
        c = self._peek()
        if c in ("*", "+", "?"):
            self.pos += 1
            bounds = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{":
            m = _REPEAT.match(self.p, self.pos)
            if m is None:
                raise _Unsupported("'{' that is not a repetition")
            self.pos = m.end()
            low = int(m[1])
            high = low if m[2] is None else (int(m[3]) if m[3] else None)
            bounds = (low, high)
        else:
            return 1, 1
        if self._peek() == "?":
            self.pos += 1
        if self._peek() in ("*", "+", "?", "{"):
            raise _Unsupported("repeated quantifier")
        return bounds

    def atom(self) -> _Info:
        c = self.p[self.pos]
        self.pos += 1
        if c == "(":
            return self._group()
        if c == "[":
            return self._class()
        if c == "\\":
            return self._escape()
        if c in ".^$":
            return _OPAQUE
        if c in _SPECIAL:  # a quantifier with nothing to repeat, ']', '{', '}'
            raise _Unsupported(f"unexpected {c!r}")
        return self._char(c)

    def _char(self, c: str) -> _Info:
        if not c.isascii() or (self.ci and c in _CI_UNSAFE):
            return _OPAQUE
        return _Info(frozenset({c.lower()}), None)

    def _escape(self) -> _Info:
        c = self._peek()
        if c is None:
            raise _Unsupported("trailing backslash")
        self.pos += 1
        if c in _PUNCT:
            return self._char(c)
        if c in _OPAQUE_ESCAPES:
            return _OPAQUE
        raise _Unsupported(f"escape \\{c}")

    def _group(self) -> _Info:
        if self.p.startswith("?", self.pos):
            m = re.compile(r"\?(?::|P?<[A-Za-z_]\w*>|[imsU-]*(:|\)))").match(self.p, self.pos)
            if m is None:
                raise _Unsupported("group syntax")
            self.pos = m.end()
            if m[0].endswith(")"):  # a flag setting: no content
                return _EMPTY
        inner = self.alternation()
        if self._peek() != ")":
            raise _Unsupported("unclosed group")
        self.pos += 1
        return inner

    def _class(self) -> _Info:
        if self._peek() == "^":
            self.pos += 1
            members: set[str] | None = None
        else:
            members = set()
        first = True
        while True:
            c = self._peek()
            if c is None:
                raise _Unsupported("unclosed class")
            self.pos += 1
            if c == "]" and not first:
                break
            first = False
            if c == "[":
                raise _Unsupported("'[' inside a class (POSIX classes)")
            if c == "\\":
                e = self._peek()
                if e is None:
                    raise _Unsupported("trailing backslash")
                self.pos += 1
                if e in _OPAQUE_ESCAPES:
                    members = None
                    continue
                if e not in _PUNCT:
                    raise _Unsupported(f"escape \\{e} in a class")
                c = e
            elif c == "-":
                members = None  # a range (or a literal '-'): not a small literal set
                continue
            if members is not None:
                members.add(c)
        if not members:
            return _OPAQUE
        chars = [self._char(m).exact for m in members]
        if any(x is None for x in chars):
            return _OPAQUE
        out = frozenset().union(*(x for x in chars if x is not None))
        return _Info(out, None) if len(out) <= MAX_ALTERNATIVES else _OPAQUE
