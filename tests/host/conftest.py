"""Fixtures of the host end-to-end attack tests (helpers: tests/host/attack_lab.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.host.attack_lab import Procs, make_netns, make_procs


@pytest.fixture
def netns() -> Iterator[str]:
    yield from make_netns()


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from make_procs()
