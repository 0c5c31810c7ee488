"""``filter_path`` for the fake's bulk responses (dotted paths, ``*`` per level), as
Elasticsearch applies it: lists are traversed transparently and emptied objects vanish."""

from __future__ import annotations

from typing import Any

_KEEP: dict[str, Any] = {}  # marker: the path ended here, keep the whole subtree


def filter_path(value: Any, paths: list[str]) -> Any:
    """Keep only what matches one of ``paths`` (``a.b``, ``items.*.status``); lists are
    traversed transparently, as Elasticsearch does. The paths are compiled into a tree once
    per request (the bulk response of a big batch has thousands of items)."""
    tree: dict[str, Any] = {}
    for path in paths:
        if not path:
            continue
        node = tree
        names = path.split(".")
        for i, name in enumerate(names):
            if node is _KEEP:
                break
            if i == len(names) - 1:
                node[name] = _KEEP
            else:
                node = node.setdefault(name, {})
    return _filter(value, tree) if tree else None


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if a is _KEEP or b is _KEEP:
        return _KEEP
    out = dict(a)
    for key, sub in b.items():
        out[key] = _merge(out[key], sub) if key in out else sub
    return out


def _filter(value: Any, tree: dict[str, Any]) -> Any:
    if tree is _KEEP:
        return value
    if isinstance(value, list):
        kept = [_filter(v, tree) for v in value]
        return [v for v in kept if v is not None]
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    star = tree.get("*")
    if star is None:  # only named keys: look them up instead of walking the value
        for key, sub in tree.items():
            if key in value:
                kept = value[key] if sub is _KEEP else _filter(value[key], sub)
                if kept is not None and kept != {}:
                    out[key] = kept
        return out or None
    for key, child in value.items():
        sub = tree.get(key)
        kept = _filter(child, star if sub is None else _merge(sub, star))
        if kept is not None and kept != {}:
            out[key] = kept
    return out or None
