"""The real Elasticsearch node, one per test session (tests/es_server/real_node.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.es_server.real_node import RealElasticsearch, Unavailable, es_home, find_java


@pytest.fixture(scope="session")
def real_es() -> Iterator[RealElasticsearch]:
    """A started single node (TLS, basic auth); skipped only when the distribution or a Java
    21+ runtime is missing — and never on CI, where `make test` fetches them (a failure)."""
    try:
        es_home()
        find_java()
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"real Elasticsearch unavailable on CI: {exc}")
        pytest.skip(f"real Elasticsearch unavailable: {exc}")
    # Not pytest's tmp_path: that is private to the user, and as root the node runs as nobody.
    workdir = Path(tempfile.mkdtemp(prefix="vedette-es-"))
    node = RealElasticsearch(workdir / "node")
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
