"""Read a rule file's YAML documents without trusting it.

Before anything is constructed, libyaml's event stream (a flat, non-recursive parse) is checked
for size, nesting depth and alias expansion, so YAML bombs, deeply nested documents and huge
files are refused with ``file:line: reason`` instead of eating memory or the C stack. Only safe
loaders are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.errors import RuleError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # both are safe loaders

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 48
MAX_EXPANDED_NODES = 100_000


@dataclass(frozen=True, slots=True)
class Document:
    data: Any
    line: int
    """1-based line where the document starts."""
    end_line: int


def read_documents(path: Path) -> tuple[list[Document], list[str]]:
    """All documents of a rule file and its text lines; :class:`RuleError` when unsafe/invalid."""
    src = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RuleError(f"file is {size} bytes, larger than the {MAX_FILE_BYTES} limit", src)
        raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}", src) from None
    if len(raw) > MAX_FILE_BYTES:
        raise RuleError(f"file larger than the {MAX_FILE_BYTES} bytes limit", src)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"not UTF-8 (byte {exc.start})", src) from None
    return parse_documents(text, src), text.splitlines()


def parse_documents(text: str, src: str = "<input>") -> list[Document]:
    spans = _check_events(text, src)
    try:
        datas = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:  # pragma: no cover - the event pass parsed it already
        raise RuleError(f"invalid YAML: {exc}", src) from None
    if len(datas) != len(spans):  # pragma: no cover - both passes see the same stream
        raise RuleError("inconsistent YAML document stream", src)
    return [Document(d, start, end) for d, (start, end) in zip(datas, spans, strict=True)]


def _check_events(text: str, src: str) -> list[tuple[int, int]]:
    """Walk the event stream: depth, expanded node count, document spans."""
    spans: list[tuple[int, int]] = []
    depth = 0
    doc_start = 1
    fresh = False
    anchors: dict[str, int] = {}
    # Stack of [anchor, expanded-size-so-far] for open collections.
    stack: list[list[Any]] = []
    total = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.DocumentStartEvent):
                doc_start = line
                fresh = True
                anchors.clear()
            elif isinstance(event, yaml.DocumentEndEvent):
                end = event.end_mark.line + 1 if event.end_mark else line
                spans.append((doc_start, end))
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if fresh:  # point at the document's first line, not at its '---'
                    doc_start, fresh = line, False
                depth += 1
                if depth > MAX_DEPTH:
                    raise RuleError(f"nesting deeper than {MAX_DEPTH} levels", src, line)
                stack.append([event.anchor, 1])
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
                anchor, size = stack.pop()
                if anchor:
                    anchors[anchor] = size
                if stack:
                    stack[-1][1] += size
                total += 1
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if isinstance(event, yaml.AliasEvent):
                    size = anchors.get(event.anchor or "", 1)
                else:
                    size = 1
                    if event.anchor:
                        anchors[event.anchor] = 1
                total += size
                if stack:
                    stack[-1][1] += size
            if total > MAX_EXPANDED_NODES or (stack and stack[-1][1] > MAX_EXPANDED_NODES):
                raise RuleError(
                    f"more than {MAX_EXPANDED_NODES} YAML nodes once aliases are expanded "
                    "(YAML bomb?)", src, line,
                )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        raise RuleError(f"invalid YAML: {exc.problem or exc.context or exc}", src, at) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}", src) from None
    return spans
