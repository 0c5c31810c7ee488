"""Read a rule file's YAML documents without trusting it.

Size, nesting depth, node count and the *expanded* size of values are checked by the one YAML
guard (:mod:`agent.yamlguard`) before anything is constructed, so YAML bombs, deeply nested
documents and huge files are refused with ``file:line: reason`` instead of eating memory or
the C stack. Only safe loaders are used.

A symlink is followed only to a ``.yml``/``.yaml`` file: a link to ``/etc/shadow`` in a rule
folder is refused without being read, so no error message can quote its content. A linked
YAML file must also look like a rule file (every document a mapping with ``detection``,
``correlation`` or a fixture's ``cases``); otherwise it is refused before pySigma's messages,
which quote values, can show what is in it (a netplan file's Wi-Fi password).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.errors import RuleError
from agent.yamlguard import SafeLoader, YamlLimits, YamlRefused, check_events, read_text

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 48
MAX_EXPANDED_NODES = 100_000
MAX_EXPANDED_CHARS = 4 << 20  # 4 MiB of values: four times the largest file
LIMITS = YamlLimits(MAX_FILE_BYTES, MAX_DEPTH, MAX_EXPANDED_NODES, MAX_EXPANDED_CHARS)
RULE_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True)
class Document:
    data: Any
    line: int
    """1-based line where the document starts."""
    end_line: int


def read_documents(path: Path) -> tuple[list[Document], list[str]]:
    """All documents of a rule file and its text lines; :class:`RuleError` when unsafe/invalid."""
    src = str(path)
    if path.is_symlink():
        target = path.resolve()
        if target.suffix not in RULE_SUFFIXES:
            raise RuleError("symlink to a file that is not a .yml/.yaml rule file "
                            "(not read)", src)
    try:
        text = read_text(path, LIMITS)
    except YamlRefused as exc:
        raise RuleError(exc.reason, src, exc.line) from None
    docs = parse_documents(text, src)
    if path.is_symlink() and not all(_rule_shaped(d.data) for d in docs):
        raise RuleError("symlink to a YAML file that is not a rule file (content not shown)",
                        src)
    return docs, text.splitlines()


def _rule_shaped(data: Any) -> bool:
    return data is None or (isinstance(data, dict) and not {"detection", "correlation",
                                                             "cases"}.isdisjoint(data))


def parse_documents(text: str, src: str = "<input>") -> list[Document]:
    try:
        spans = check_events(text, LIMITS)
    except YamlRefused as exc:
        raise RuleError(exc.reason, src, exc.line) from None
    try:
        datas = list(yaml.load_all(text, Loader=SafeLoader))
    except yaml.YAMLError as exc:  # pragma: no cover - the event pass parsed it already
        raise RuleError(f"invalid YAML: {exc}", src) from None
    except (ValueError, TypeError, OverflowError) as exc:  # constructors: `!!int abc`
        raise RuleError(f"invalid YAML value: {exc}", src) from None
    if len(datas) != len(spans):  # pragma: no cover - both passes see the same stream
        raise RuleError("inconsistent YAML document stream", src)
    return [Document(d, start, end) for d, (start, end) in zip(datas, spans, strict=True)]
