"""The one YAML guard: bounded reading and a flat pre-parse of files nobody should trust.

Both YAML inputs of the agent — the configuration (:mod:`agent.config`) and rule files
(:mod:`agent.detection.yamlsafe`) — go through here before anything is constructed:

1. :func:`read_text`: the size is checked with ``stat`` *before* reading (a 100 MB file is
   refused in microseconds), then at most ``max_bytes + 1`` bytes are read (a file that grows
   meanwhile is still caught), and the bytes must be UTF-8.
2. :func:`check_events`: libyaml's event stream (a flat, non-recursive parse that builds no
   objects) is walked once to measure the document *as it would be once aliases are
   expanded*: nesting depth, node count and the characters of all scalars. Each anchor's
   measures are kept, so ``*alias`` costs what its anchor costs. A YAML bomb — 5,000 aliases
   of one 900 KB string in a 915 KB file, which would construct and serialise 4.5 GB — is
   refused at the alias that crosses a limit, with the line of that alias, after reading the
   file once. A recursive alias (one naming an anchor still open) is refused too.

Limits are per caller (:class:`YamlLimits`); failures raise :class:`YamlRefused` with a
reason and a line, which each caller turns into its own ``file:line: reason`` error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # both are safe loaders

# A scalar that would become a number may have at most this many characters (Python's own
# limit for decimal ints): YAML 1.1 sexagesimal ints (``1:2:3``) are constructed digit by
# digit in quadratic time, 450 KB of them took 11 s.
MAX_NUMBER_CHARS = 4300
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_RESOLVER: Any = yaml.resolver.Resolver()


@dataclass(frozen=True, slots=True)
class YamlLimits:
    max_bytes: int
    max_depth: int
    max_nodes: int
    max_expanded_chars: int


class YamlRefused(Exception):
    """The input is not read further; ``reason`` names the limit or the YAML error."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def read_text(path: Path, limits: YamlLimits) -> str:
    """The file's text; :class:`YamlRefused` when unreadable, too large or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise YamlRefused(f"file is {size} bytes, larger than the {limits.max_bytes} "
                              "bytes limit")
        with path.open("rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise YamlRefused(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > limits.max_bytes:
        raise YamlRefused(f"file larger than the {limits.max_bytes} bytes limit")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused(f"not UTF-8 (byte {exc.start})") from None


@dataclass(slots=True)
class _Size:
    nodes: int = 0
    chars: int = 0
    height: int = 0


def check_events(text: str, limits: YamlLimits) -> list[tuple[int, int]]:
    """Measure the expanded document(s); the (first, last) line of each document.

    Raises :class:`YamlRefused` at the first limit crossed or on invalid YAML.
    """
    spans: list[tuple[int, int]] = []
    doc_start = 1
    fresh = False
    anchors: dict[str, _Size] = {}
    open_anchors: set[str] = set()
    stack: list[tuple[str | None, _Size]] = []  # open collections: anchor, size so far
    total = _Size()
    try:
        for event in yaml.parse(text, Loader=SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.DocumentStartEvent):
                doc_start, fresh = line, True
                anchors.clear()
                continue
            if isinstance(event, yaml.DocumentEndEvent):
                spans.append((doc_start, event.end_mark.line + 1 if event.end_mark else line))
                continue
            if fresh and isinstance(event, yaml.NodeEvent):
                doc_start, fresh = line, False  # the document's first node, not its '---'
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) + 1 > limits.max_depth:
                    raise YamlRefused(f"nesting deeper than {limits.max_depth} levels", line)
                if event.anchor:
                    open_anchors.add(event.anchor)
                stack.append((event.anchor, _Size(nodes=1)))
                size = _Size(nodes=1)  # the collection itself; its children count as they come
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, done = stack.pop()
                done.height += 1
                if anchor:
                    anchors[anchor] = done
                    open_anchors.discard(anchor)
                if stack:
                    _fold(stack[-1][1], done)
                continue
            elif isinstance(event, yaml.AliasEvent):
                name = event.anchor or ""
                if name in open_anchors:
                    raise YamlRefused(f"recursive alias *{name}", line)
                size = anchors.get(name, _Size(nodes=1))
                if len(stack) + size.height > limits.max_depth:
                    raise YamlRefused(f"nesting deeper than {limits.max_depth} levels once "
                                      f"aliases are expanded (*{name})", line)
                if stack:
                    _fold(stack[-1][1], size)
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_NUMBER_CHARS and _is_number(event):
                    raise YamlRefused(f"number of more than {MAX_NUMBER_CHARS} characters",
                                      line)
                size = _Size(nodes=1, chars=len(event.value))
                if event.anchor:
                    anchors[event.anchor] = size
                if stack:
                    _fold(stack[-1][1], size)
            else:
                continue
            total.nodes += size.nodes
            total.chars += size.chars
            if total.nodes > limits.max_nodes:
                raise YamlRefused(f"more than {limits.max_nodes} YAML nodes once aliases are "
                                  "expanded (YAML bomb?)", line)
            if total.chars > limits.max_expanded_chars:
                raise YamlRefused(f"more than {limits.max_expanded_chars} characters of "
                                  "values once aliases are expanded (YAML bomb?)", line)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        raise YamlRefused(f"invalid YAML: {exc.problem or exc.context or exc}", at) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(f"invalid YAML: {exc}") from None
    return spans


def _is_number(event: Any) -> bool:
    tag = event.tag
    if tag in (None, "!") and event.implicit[0]:
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, (True, False))
    return tag in _NUMBER_TAGS


def _fold(parent: _Size, child: _Size) -> None:
    """Add a finished child (or an alias's anchor) to the open collection it belongs to."""
    parent.nodes += child.nodes
    parent.chars += child.chars
    parent.height = max(parent.height, child.height)
