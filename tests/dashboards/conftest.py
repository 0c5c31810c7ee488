"""Fixtures for the dashboard and alert-rule tests: the committed JSON, rules, names."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from .helpers import GRAFANA, RULES, allowed_metric_names


@pytest.fixture(scope="session")
def allowed_metrics() -> frozenset[str]:
    return allowed_metric_names()


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


@pytest.fixture(scope="session")
def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]
