"""The agent's exception hierarchy.

::

    AgentError
    ├── ConfigError      bad configuration (file, line, reason)
    ├── RuleError        a rule file that cannot be loaded (file, line, reason)
    ├── SinkError        an alert sink that cannot deliver
    ├── CollectorError   a collector that cannot run (missing privilege, missing interface)
    └── StartupRefused   ``vedette run`` would start blind (no rules, a missing rule path)

Every error that points into a file carries ``path`` and ``line`` so that operators see
``file:line: reason`` and never a traceback.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class LocatedError(AgentError):
    """An error that points at a place in a file."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        super().__init__(self.location_text())

    def location_text(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"


class ConfigError(LocatedError):
    """One problem in the configuration; ``ConfigErrors`` groups several."""


class ConfigErrors(AgentError):
    """Every problem found while loading one configuration file."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.location_text() for e in errors))


class RuleError(LocatedError):
    """A rule file that cannot be parsed, compiled or tested."""


class SinkError(AgentError):
    """An alert sink failed to deliver."""


class CollectorError(AgentError):
    """A collector cannot run in this environment."""


class StartupRefused(AgentError):
    """``vedette run`` refuses to start: it would run blind (exit 2, one line per reason)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))
