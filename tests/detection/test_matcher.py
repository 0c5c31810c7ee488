"""Sigma value semantics of the compiled matcher (and property tests against a reference)."""

from __future__ import annotations

import base64
import fnmatch
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.detection.helpers import PROC, engine_for, event, predicate, proc, rule_doc


def sel(**items: object) -> dict[str, object]:
    return {"sel": {k.replace("__", "|"): v for k, v in items.items()}, "condition": "sel"}


@pytest.mark.parametrize(
    ("detection", "fields", "expected"),
    [
        # plain strings are case-insensitive equality
        (sel(Image="/usr/bin/CURL"), {"process.executable": "/usr/bin/curl"}, True),
        (sel(Image="/usr/bin/curl"), {"process.executable": "/usr/bin/curl2"}, False),
        # wildcards and escaped wildcards
        (sel(Image="*/cu?l"), {"process.executable": "/usr/bin/curl"}, True),
        (sel(Image="*/cu?l"), {"process.executable": "/usr/bin/cuurl"}, False),
        (sel(CommandLine="a\\*b"), {"process.command_line": "a*b"}, True),
        (sel(CommandLine="a\\*b"), {"process.command_line": "axxb"}, False),
        (sel(CommandLine="*"), {"process.command_line": ""}, True),
        (sel(CommandLine="*"), {}, False),
        # contains / startswith / endswith / all
        (sel(CommandLine__contains="WGET"), {"process.command_line": "sudo wget x"}, True),
        (sel(CommandLine__startswith="sudo"), {"process.command_line": "SUDO wget"}, True),
        (sel(CommandLine__startswith="sudo"), {"process.command_line": "x sudo"}, False),
        (sel(Image__endswith=["/nc", "/ncat"]), {"process.executable": "/bin/ncat"}, True),
        (sel(Image__endswith=["/nc", "/ncat"]), {"process.executable": "/bin/ncatx"}, False),
        (
            sel(CommandLine__contains__all=["-e", "/bin/sh"]),
            {"process.command_line": "nc -e /bin/sh"},
            True,
        ),
        (
            sel(CommandLine__contains__all=["-e", "/bin/sh"]),
            {"process.command_line": "nc -e /bin/bash"},
            False,
        ),
        # regex: unanchored search, case-sensitive unless |i
        (sel(CommandLine__re="\\s-O\\s"), {"process.command_line": "wget -O out"}, True),
        (sel(CommandLine__re="\\s-O\\s"), {"process.command_line": "wget -o out"}, False),
        (sel(CommandLine__re__i="\\s-O\\s"), {"process.command_line": "wget -o out"}, True),
        # numbers, booleans and their text
        (sel(ProcessId=42), {"process.pid": 42}, True),
        (sel(ProcessId=42), {"process.pid": "42"}, True),
        (sel(ProcessId=42), {"process.pid": 43}, False),
        (sel(CommandLine="true"), {"process.command_line": True}, True),
        # comparisons
        (sel(ProcessId__gt=100), {"process.pid": 101}, True),
        (sel(ProcessId__gt=100), {"process.pid": 100}, False),
        (sel(ProcessId__gte=100), {"process.pid": "100"}, True),
        (sel(ProcessId__lt=100), {"process.pid": 99.5}, True),
        (sel(ProcessId__lte=100), {"process.pid": "abc"}, False),
        (sel(ProcessId__lte=100), {"process.pid": True}, False),
        # null vs empty, exists
        (sel(User=None), {}, True),
        (sel(User=None), {"user.name": None}, True),
        (sel(User=None), {"user.name": ""}, False),
        (sel(User=""), {"user.name": ""}, True),
        (sel(User=""), {}, False),
        (sel(User__exists=True), {"user.name": "root"}, True),
        (sel(User__exists=True), {}, False),
        (sel(User__exists=False), {}, True),
        # list-valued fields match when any element matches
        (sel(**{"process.args": "-e"}), {"process.args": ["nc", "-E", "x"]}, True),
        (sel(**{"process.args": "-e"}), {"process.args": ["nc", "-x"]}, False),
        # fieldref
        (
            sel(Image__fieldref="ParentImage"),
            {"process.executable": "/bin/SH", "process.parent.executable": "/bin/sh"},
            True,
        ),
        (
            sel(Image__fieldref="ParentImage"),
            {"process.executable": "/bin/sh", "process.parent.executable": "/bin/bash"},
            False,
        ),
        # cased
        (sel(Image__cased="/bin/Sh"), {"process.executable": "/bin/Sh"}, True),
        (sel(Image__cased="/bin/Sh"), {"process.executable": "/bin/sh"}, False),
        # boolean conditions
        (
            {"a": {"Image|endswith": "/sh"}, "b": {"User": "root"}, "condition": "a and not b"},
            {"process.executable": "/bin/sh", "user.name": "www"},
            True,
        ),
        (
            {"a": {"Image|endswith": "/sh"}, "b": {"User": "root"}, "condition": "a and not b"},
            {"process.executable": "/bin/sh", "user.name": "ROOT"},
            False,
        ),
        (
            {"s1": {"Image": "/a"}, "s2": {"Image": "/b"}, "condition": "1 of s*"},
            {"process.executable": "/b"},
            True,
        ),
        (
            {"s1": {"Image": "/a"}, "s2": {"User": "x"}, "condition": "all of s*"},
            {"process.executable": "/a"},
            False,
        ),
        # a list of maps is OR-ed
        ({"sel": [{"Image": "/a"}, {"User": "x"}], "condition": "sel"}, {"user.name": "X"}, True),
    ],
)
def test_value_semantics(
    detection: dict[str, object], fields: dict[str, object], expected: bool
) -> None:
    assert predicate(detection)(fields) is expected


def test_cidr() -> None:
    match = predicate(
        sel(DestinationIp__cidr=["10.0.0.0/8", "2001:db8::/32"]),
        {"product": "linux", "category": "network_connection"},
    )
    assert match({"destination.ip": "10.1.2.3"})
    assert match({"destination.ip": "2001:db8::1"})
    assert not match({"destination.ip": "11.0.0.1"})
    assert not match({"destination.ip": "not an ip"})
    assert not match({})


def test_keywords_match_the_raw_message(tmp_path: Path) -> None:
    doc = rule_doc(
        {
            "keywords": ["Accepted publickey for root", "session opened*by root"],
            "condition": "keywords",
        },
        {"product": "linux", "service": "sshd"},
        vedette={"update_interval": 0},
    )  # every match is sent
    engine = engine_for(tmp_path, doc)
    sshd = PROC._replace(category=None, service="sshd")
    assert engine.process(
        event(1.0, sshd, message="Nov 1 sshd[1]: ACCEPTED PUBLICKEY FOR ROOT from x")
    )
    assert engine.process(event(2.0, sshd, message="pam: session opened for user x by root(uid=0)"))
    assert not engine.process(event(3.0, sshd, message="Accepted password for bob"))


def test_modifiers_base64offset_and_windash_expand(tmp_path: Path) -> None:
    match = predicate(sel(CommandLine__base64offset__contains="/bin/sh"))
    encoded = base64.b64encode(b"xx/bin/sh -i").decode()
    assert match({"process.command_line": f"echo {encoded} | base64 -d"})
    assert not match({"process.command_line": "echo aGVsbG8= | base64 -d"})


def test_matched_fields_and_extra_fields_are_copied(tmp_path: Path) -> None:
    doc = rule_doc(sel(Image__endswith="/curl"), vedette={"fields": ["User", "process.pid"]})
    engine = engine_for(tmp_path, doc)
    alerts = engine.process(
        proc(
            process__executable="/usr/bin/curl",
            user__name="eve",
            process__pid=7,
            process__command_line="curl x",
        )
    )
    assert alerts[0].matched == {
        "process.executable": "/usr/bin/curl",
        "user.name": "eve",
        "process.pid": 7,
    }


# ------------------------------------------------------------------------- properties

text_chars = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="*?\\")
plain = st.text(text_chars, min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    value=st.text(string.ascii_letters + string.digits + "/-_. ", min_size=1, max_size=16),
    flips=st.lists(st.booleans(), min_size=16, max_size=16),
)
def test_equality_is_case_insensitive(value: str, flips: list[bool]) -> None:
    match = predicate(sel(Image=value))
    variant = "".join(c.upper() if f else c.lower() for c, f in zip(value, flips, strict=False))
    assert match({"process.executable": variant})
    assert not match({"process.executable": value + "x"})


@settings(max_examples=60, deadline=None)
@given(prefix=plain, needle=plain.filter(bool), suffix=plain)
def test_contains_agrees_with_python(prefix: str, needle: str, suffix: str) -> None:
    match = predicate(sel(CommandLine__contains=needle))
    assert match({"process.command_line": prefix + needle + suffix})
    haystack = prefix + suffix
    assert match({"process.command_line": haystack}) is (needle.lower() in haystack.lower())


wild = st.text(st.sampled_from("ab*?.[]()+^$|\\"), min_size=1, max_size=8)


@settings(max_examples=120, deadline=None)
@given(pattern=wild, candidate=st.text(st.sampled_from("ab.[]()+^$|*?\\"), max_size=10))
def test_wildcards_agree_with_a_reference_glob(pattern: str, candidate: str) -> None:
    """``*``/``?`` are wildcards, ``\\*``/``\\?``/``\\\\`` literals, every other char literal."""
    if pattern.endswith("\\") and not pattern.endswith("\\\\"):
        pattern += (
            "\\"  # a lone trailing backslash is a literal in Sigma; keep the reference simple
        )
    ref = _reference_glob(pattern)
    match = predicate(sel(CommandLine=pattern))
    assert match({"process.command_line": candidate}) is bool(ref.fullmatch(candidate.lower()))


def _reference_glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out).lower(), re.S)


@settings(max_examples=40, deadline=None)
@given(name=st.text(string.ascii_lowercase, min_size=1, max_size=8))
def test_endswith_basename_index_agrees_with_fnmatch(name: str) -> None:
    match = predicate(sel(Image__endswith="/" + name))
    for candidate in (f"/usr/bin/{name}", f"/usr/bin/x{name}", f"/{name}/bin", name):
        assert match({"process.executable": candidate}) is fnmatch.fnmatchcase(
            candidate, f"*/{name}"
        )
