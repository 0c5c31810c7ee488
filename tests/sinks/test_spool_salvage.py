"""A damaged spool costs the records on the damaged page, no more — and the loss is counted.

The spool is written, closed (the agent stopped), then one 4 KiB page of the file is
overwritten with garbage; the next open moves the file aside and carries every readable record
over, with the sqlite3 shell's ``.recover`` and without it (rowid scans)."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from agent.alerts import Alert
from agent.sinks.elasticsearch import spool_dir
from agent.sinks.es_docs import latest_index
from agent.spool import Spool
from agent.spool.sqlite_file import PAGE_SIZE
from tests.es_server import FakeElasticsearch
from tests.es_server.helpers import (
    fresh_metrics,
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)

MB = 1024 * 1024
N = 5000


def _body(i: int) -> bytes:
    return f'{{"create":{{"_id":"a{i}"}}}}\n{{"n":{i},"pad":"{"x" * (300 + i % 700)}"}}\n'.encode()


def _write_spool(path: Path) -> None:
    spool = Spool(path, 256 * MB, 86400)
    for i in range(N):
        spool.append("alert", 3, _body(i), key=f"alert-{i}")
    spool.close()


def _leaf_pages(path: Path) -> list[int]:
    """Page numbers (1-based) of the ``records`` table's leaf pages (b-tree page type 13)."""
    data = path.read_bytes()
    db = sqlite3.connect(path)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()[0]
    db.close()
    leaves = []
    stack = [root]
    while stack:
        page = stack.pop()
        base = (page - 1) * PAGE_SIZE
        header = base + (100 if page == 1 else 0)
        kind = data[header]
        if kind == 13:
            leaves.append(page)
        elif kind == 5:  # interior table page: cell pointers, then the right-most child
            cells = int.from_bytes(data[header + 3:header + 5], "big")
            stack.append(int.from_bytes(data[header + 8:header + 12], "big"))
            for c in range(cells):
                ptr = int.from_bytes(data[header + 12 + 2 * c:header + 14 + 2 * c], "big")
                stack.append(int.from_bytes(data[base + ptr:base + ptr + 4], "big"))
    return leaves


def _rows_on(path: Path, page: int) -> int:
    data = path.read_bytes()
    header = (page - 1) * PAGE_SIZE
    return int.from_bytes(data[header + 3:header + 5], "big")


@pytest.mark.parametrize("shell", ["sqlite3", None], ids=["recover", "scan"])
def test_one_overwritten_page_costs_at_most_its_records(tmp_path: Path,
                                                        shell: str | None) -> None:
    if shell and shutil.which(shell) is None:
        pytest.skip("the sqlite3 shell is not installed")
    path = tmp_path / "spool.db"
    _write_spool(path)
    leaves = _leaf_pages(path)
    assert len(leaves) > 100
    victim = leaves[len(leaves) // 2]
    on_page = _rows_on(path, victim)
    assert on_page >= 1
    with path.open("r+b") as handle:  # the agent is stopped: one page overwritten
        handle.seek((victim - 1) * PAGE_SIZE)
        handle.write(random.Random(7).randbytes(PAGE_SIZE))

    spool = Spool(path, 256 * MB, 86400, salvage_shell=shell)
    try:
        reports = spool.take_salvage_reports()
        assert len(reports) == 1
        report = reports[0]
        # SQLite 3.40's shell cannot .recover this layout; the scan then takes over
        assert report.method in (("recover", "scan") if shell else ("scan",))
        assert N - on_page <= report.recovered < N
        assert report.lost == N - report.recovered and report.exact
        assert spool.corrupt == report.lost  # the shipper counts these as dropped{corrupt}
        assert len(spool) == report.recovered
        assert list(tmp_path.glob("spool.db.corrupt-*"))
        # every record read back is intact and in order, and new ones follow
        records = spool.read(0, N, 1 << 30)
        assert len(records) == report.recovered
        assert all(r.body == _body(int(r.key.split("-")[1])) for r in records)
        seq = spool.append("alert", 3, b"after", key="alert-new").seq
        assert seq > records[-1].seq
        # superseding still works for salvaged records
        assert spool.append("alert", 3, b"newer", key=records[0].key).superseded == 1
    finally:
        spool.close()


def _damage_one_leaf(path: Path) -> int:
    """Overwrite one leaf page of ``records`` in the middle; returns how many rows it held."""
    leaves = sorted(_leaf_pages(path))
    victim = leaves[len(leaves) // 2]
    rows = _rows_on(path, victim)
    with path.open("r+b") as handle:
        handle.seek((victim - 1) * PAGE_SIZE)
        handle.write(random.Random(11).randbytes(PAGE_SIZE))
    return rows


def test_the_sink_ships_what_was_salvaged_and_counts_the_rest(
    tmp_path: Path, server: FakeElasticsearch
) -> None:
    down = make_config(tmp_path, ["http://127.0.0.1:9"])
    sink = open_sink(down)
    alerts = [make_alert(i) for i in range(N)]
    for alert in alerts:
        sink.emit(alert)
    sink.close()
    on_page = _damage_one_leaf(spool_dir(down) / "spool.db")

    metrics = fresh_metrics()
    raised: list[Alert] = []
    sink = open_sink(make_config(tmp_path, [server.url]), metrics, on_alert=raised.append)
    try:
        assert wait_until(sink.idle, 60)
        assert wait_until(lambda: bool(raised), 10), "no internal alert for the damage"
    finally:
        sink.close()
    recovered = sample(metrics, "vedette_es_spool_recovered_total")
    lost = sample(metrics, "vedette_es_spool_dropped_total", reason="corrupt")
    assert N - on_page <= recovered < N and recovered + lost == N
    stored = {d.source["event"]["id"] for d in server.cluster.docs(latest_index("default"))}
    assert len(stored) == recovered and stored <= {a.id for a in alerts}
    alert = next(a for a in raised if a.rule.id == "vedette-internal-es-spool-corrupt")
    assert alert.count == lost and f"{int(recovered)} records salvaged" in alert.message
