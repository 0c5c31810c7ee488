"""The spool's SQLite file: page and WAL settings, schema, and migration of older layouts.

Coalescing keys (alert ids) are random. An index on ``records(key)`` — the first layout — made
every acknowledged record an update at a random place of that index: two thirds of the cost of
an acknowledgement. The ``keys`` table maps each key to its newest record instead;
acknowledgements leave it alone and :class:`~agent.spool.sqlite_spool.Spool` removes the
entries of records that are gone in bulk, touching each of its pages once.

``meta.records`` is the number of records, written in the same transaction as every change:
after damage it tells how many records salvage could not read (:mod:`agent.spool.salvage`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

PAGE_SIZE = 4096
_SYNCHRONOUS = {"always": "FULL", "batch": "NORMAL", "never": "OFF"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    severity INTEGER NOT NULL,
    created REAL NOT NULL,
    crc INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_eviction ON records(severity, seq);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
_MIGRATE_KEY_INDEX = (
    "INSERT OR REPLACE INTO keys (key, seq)"
    " SELECT key, max(seq) FROM records WHERE key != '' GROUP BY key",
    "DROP INDEX records_key",
)


def connect(path: Path, fsync: Literal["always", "batch", "never"], wal_bytes: int
            ) -> sqlite3.Connection:
    """Open (or create) the spool at ``path``; raises ``sqlite3.DatabaseError`` when the file
    is not a usable database (the caller moves it aside)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[fsync]}")
        # Distribution builds (Debian) default to secure_delete=ON: every acknowledged
        # record's pages are zeroed and rewritten through the WAL, more than half the cost
        # of an acknowledgement. FAST zeroes deleted content only on pages written anyway;
        # freed pages leave the file at the next incremental vacuum (every sync).
        db.execute("PRAGMA secure_delete=FAST")
        db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(4, wal_bytes // PAGE_SIZE // 2)}")
        db.executescript(_SCHEMA)  # "file is not a database" surfaces here at the latest
        _migrate(db)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """A spool written by the first layout (an index on ``records(key)``) gets its ``keys``;
    one without the record counter gets it."""
    if db.execute("SELECT 1 FROM meta WHERE name = 'records'").fetchone() is None:
        db.execute("INSERT OR IGNORE INTO meta (name, value)"
                   " SELECT 'records', count(*) FROM records")
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index'"
                  " AND name = 'records_key'").fetchone():
        db.execute("BEGIN IMMEDIATE")
        for statement in _MIGRATE_KEY_INDEX:
            db.execute(statement)
        db.execute("COMMIT")
