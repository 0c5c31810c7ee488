"""pySigma's own rule validators, as lint warnings for ``vedette rules validate``.

They check Sigma style (duplicate titles/tags, dangling detections, numbers written as strings,
wildcards where a modifier is meant …); the findings are warnings, never load errors. Validators
that download MITRE data are skipped: the agent makes no network calls to lint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.detection.loader import rule_files
from agent.detection.yamlsafe import read_documents
from agent.errors import RuleError

ONLINE_VALIDATORS = frozenset({"attacktag", "d3_fendtag"})


@dataclass(frozen=True, slots=True)
class LintWarning:
    path: str
    rule: str
    check: str
    description: str

    def __str__(self) -> str:
        return f"{self.path}: warning: {self.rule}: {self.check}: {self.description}"


def lint(paths: Iterable[Path]) -> list[LintWarning]:
    """Findings of every offline pySigma validator on the rules under ``paths``."""
    from sigma.collection import SigmaCollection  # noqa: PLC0415 - only the CLI lints
    from sigma.plugins import InstalledSigmaPlugins  # noqa: PLC0415
    from sigma.validation import SigmaValidator  # noqa: PLC0415

    # only files the guarded reader accepts: pySigma's loader has no size or alias limits (a
    # 100 MB file took it minutes), and the loader reports the refused ones already
    files: list[str | Path] = [f for p in paths if Path(p).exists() for f in rule_files(Path(p))
                               if _readable(f)]
    if not files:
        return []
    validators: dict[str, Any] = InstalledSigmaPlugins.autodiscover().validators
    offline = [v for name, v in sorted(validators.items()) if name not in ONLINE_VALIDATORS]
    try:
        collection = SigmaCollection.load_ruleset(files, collect_errors=True)
    except Exception:  # the loader reports broken files with file:line; lint is best effort
        return []
    # Rules pySigma could not parse are the loader's errors; validators would only crash on
    # them (internal exception text is no help to an author), so they are left out. Should a
    # validator still fail, each rule is validated alone so that one rule costs only its own
    # findings (the cross-rule checks, such as duplicate titles, then run per rule).
    good: list[Any] = [r for r in collection.rules if not getattr(r, "errors", None)]
    issues: list[Any] = []
    try:
        issues = list(SigmaValidator(offline).validate_rules(iter(good)))
    except Exception:
        for rule in good:
            try:
                issues.extend(SigmaValidator(offline).validate_rules(iter([rule])))
            except Exception:  # noqa: S112 - a validator bug must not hide other findings
                continue
    out = []
    for issue in issues:
        affected: list[Any] = list(issue.rules) or [None]
        for rule in affected:
            source = getattr(rule, "source", None)
            path = str(getattr(source, "path", "") or "<rules>")
            title = getattr(rule, "title", "-") if rule is not None else "-"
            out.append(LintWarning(path, title, type(issue).__name__,
                                   str(getattr(issue, "description", issue))))
    return sorted(out, key=lambda w: (w.path, w.rule, w.check))


def _readable(file: Path) -> bool:
    try:
        read_documents(file)
    except RuleError:
        return False
    return True
