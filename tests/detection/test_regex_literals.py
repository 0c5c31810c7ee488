"""The literals of ``|re`` patterns that the candidate index uses are sound against RE2 itself."""

from __future__ import annotations

import string

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection.regex_literals import regex_literals


def test_ascii_case_folding_orbits_are_what_the_parser_assumes() -> None:
    """Under (?i) RE2 matches an ASCII letter's Unicode simple-folding orbit. Every member must
    lower to the letter's lower case, except for s/S (U+017F), which are never literals."""
    every = "".join(chr(c) for c in range(0x10FFFF) if not 0xD800 <= c <= 0xDFFF)
    for c in string.printable:
        found = {m for m in re2.findall("(?i)" + re2.escape(c), every)}
        odd = {m for m in found if m.lower() != c.lower()}
        if c in "sS":
            assert odd == {"\u017f"}
        else:
            assert not odd, (c, odd)


def test_patterns_outside_the_known_subset_get_no_literals() -> None:
    assert regex_literals("[[:digit:]]abc") is None
    assert regex_literals("\\pLabc") is None
    assert regex_literals("abc\\Qdef") is None
    assert regex_literals("(?=abc)") is None
    assert regex_literals("ab{,2}cd") is None


def test_literals_of_common_shapes() -> None:
    assert regex_literals("\\s-O\\s") == {"-o"}
    assert regex_literals("(?i)union\\s+select") == {"union"}
    assert regex_literals("(?i)select") == {"elect"}
    assert regex_literals("select") == {"select"}
    assert regex_literals("-(W|R)x") == {"-wx", "-rx"}
    assert regex_literals("curl.*|wget.*") == {"curl", "wget"}
    assert regex_literals("ab?") is None  # "a" alone is too short


PIECES = ["a", "b", "s", "S", "k", "-", "(a|b)", "[ab]", "[sk]", "\\s", "x?", ".", "(ab|ba)",
          "\\d+", "(?:-|_)", "a{2}", "[^a]", "B", "[[:digit:]]", "[[:alpha:]]", "|", "(?i)",
          "(?i:ab)", "ab+", "\\.", "[-a]", "]", "\\Q"]
TEXT = "abAB-_ x1sSkK.\u017f\u212a]:[3"


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=7),
       text=st.text(st.sampled_from(TEXT), max_size=14))
def test_every_re2_match_contains_a_literal(parts: list[str], text: str) -> None:
    pattern = "".join(parts)
    try:
        compiled = re2.compile(pattern)
    except Exception:
        return
    literals = regex_literals(pattern)
    if literals is not None and compiled.search(text):
        assert any(lit in text.lower() for lit in literals), (pattern, text, literals)
