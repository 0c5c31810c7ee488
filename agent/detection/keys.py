"""Tuples of event field values, built by closures specialised on the number of fields.

``tuple(map(fields.get, names))`` creates a bound method, a map iterator and then the tuple:
on the per-event hot path (match-cache keys, correlation group keys) that costs about three
times as much as reading a fixed number of fields into a tuple display. These builders do the
latter for up to four names and concatenate for more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fields = dict[str, Any]
Getter = Callable[[Fields], tuple[Any, ...]]

_WIDTH = 4


def values_of(names: tuple[str, ...]) -> Getter:
    """``f -> (f.get(names[0]), f.get(names[1]), …)``."""
    n = len(names)
    if n == 0:
        return lambda f: ()
    if n == 1:
        (a,) = names
        return lambda f: (f.get(a),)
    if n == 2:
        a, b = names
        return lambda f: (f.get(a), f.get(b))
    if n == 3:
        a, b, c = names
        return lambda f: (f.get(a), f.get(b), f.get(c))
    if n == 4:
        a, b, c, d = names
        return lambda f: (f.get(a), f.get(b), f.get(c), f.get(d))
    head, tail = values_of(names[:_WIDTH]), values_of(names[_WIDTH:])
    return lambda f: head(f) + tail(f)


def typed_values_of(names: tuple[str, ...]) -> Getter:
    """The values of ``names`` followed by their types.

    A memo key must tell ``True`` from ``1`` (equal and equally hashed in Python, but different
    to Sigma matching), hence the types.
    """
    n = len(names)
    if n == 0:
        return lambda f: ()
    if n == 1:
        (a,) = names

        def one(f: Fields) -> tuple[Any, ...]:
            x = f.get(a)
            return (x, x.__class__)
        return one
    if n == 2:
        a, b = names

        def two(f: Fields) -> tuple[Any, ...]:
            x, y = f.get(a), f.get(b)
            return (x, y, x.__class__, y.__class__)
        return two
    if n == 3:
        a, b, c = names

        def three(f: Fields) -> tuple[Any, ...]:
            x, y, z = f.get(a), f.get(b), f.get(c)
            return (x, y, z, x.__class__, y.__class__, z.__class__)
        return three
    if n == 4:
        a, b, c, d = names

        def four(f: Fields) -> tuple[Any, ...]:
            x, y, z, w = f.get(a), f.get(b), f.get(c), f.get(d)
            return (x, y, z, w, x.__class__, y.__class__, z.__class__, w.__class__)
        return four
    head, tail = typed_values_of(names[:_WIDTH]), typed_values_of(names[_WIDTH:])
    return lambda f: head(f) + tail(f)

