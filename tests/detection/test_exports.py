"""The public surface of agent.detection is small, sorted and importable."""

from __future__ import annotations

import agent.detection as detection


def test_exported_members() -> None:
    # constants first, then the rest alphabetically (ruff RUF022)
    assert detection.__all__ == sorted(detection.__all__, key=lambda n: (not n.isupper(), n))
    for name in detection.__all__:
        assert getattr(detection, name) is not None
    for name in ("load_rules", "Engine", "EngineOptions", "LoadReport"):
        assert name in detection.__all__
