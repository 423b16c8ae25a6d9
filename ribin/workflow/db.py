"""The workflow database: one SQLite file in the store directory, opened safely.

Mutable workflow state (leads, conclusions, received hit notices, the examiners' audit log)
lives in ``STORE/workflow.sqlite``; signature segments stay immutable HDF5. The database
runs in WAL mode (readers never block the writer), with foreign keys on and a busy timeout
so that several processes (CLI commands, the review app) can share it. Its schema version
is SQLite's ``user_version``; opening applies the migrations an older file lacks, in one
transaction, and refuses a file written by a newer schema.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ribin.errors import FormatVersionError, StoreError

DB_NAME = "workflow.sqlite"
APPLICATION_ID = 0x5242_4E57  # "RBNW": tells our database from any other SQLite file
BUSY_TIMEOUT_MS = 60_000

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE leads (
    id                INTEGER PRIMARY KEY,
    query_country     TEXT NOT NULL,
    query_exhibit     TEXT NOT NULL,
    query_content     TEXT NOT NULL DEFAULT '',
    candidate_country TEXT NOT NULL,
    candidate_exhibit TEXT NOT NULL,
    candidate_content TEXT NOT NULL DEFAULT '',
    pair_low          TEXT NOT NULL,
    pair_high         TEXT NOT NULL,
    origin            TEXT NOT NULL DEFAULT '',
    score             REAL,
    log_lr            REAL,
    rank              INTEGER,
    scope             TEXT NOT NULL DEFAULT '',
    regions           TEXT NOT NULL DEFAULT '{}',
    calibration       TEXT NOT NULL DEFAULT 'uncalibrated',
    status            TEXT NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'identification', 'inconclusive', 'elimination')),
    examiner          TEXT NOT NULL DEFAULT '',
    note              TEXT NOT NULL DEFAULT '',
    created           TEXT NOT NULL,
    decided           TEXT,
    provenance        TEXT NOT NULL DEFAULT '{}',
    CHECK (pair_low < pair_high),
    UNIQUE (pair_low, pair_high, origin)
);
CREATE INDEX leads_status ON leads (status);
CREATE TABLE correlated (
    country    TEXT NOT NULL,
    exhibit_id TEXT NOT NULL,
    content_id TEXT NOT NULL,
    at         TEXT NOT NULL,
    scope      TEXT NOT NULL,
    leads      INTEGER NOT NULL,
    PRIMARY KEY (country, exhibit_id, content_id)
);
CREATE TABLE notices (
    notice_id     TEXT PRIMARY KEY,
    lead_id       INTEGER NOT NULL REFERENCES leads (id),
    sender        TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    received      TEXT NOT NULL,
    body          TEXT NOT NULL
);
CREATE TABLE audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at               TEXT NOT NULL,
    who              TEXT NOT NULL,
    action           TEXT NOT NULL,
    lead_id          INTEGER REFERENCES leads (id),
    source           TEXT NOT NULL,
    software_version TEXT NOT NULL,
    before           TEXT,
    after            TEXT,
    details          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_lead ON audit (lead_id);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER leads_are_never_deleted BEFORE DELETE ON leads
BEGIN SELECT RAISE(ABORT, 'leads are never deleted'); END;
CREATE TRIGGER notices_are_never_changed BEFORE UPDATE ON notices
BEGIN SELECT RAISE(ABORT, 'a received notice is never changed'); END;
CREATE TRIGGER notices_are_never_deleted BEFORE DELETE ON notices
BEGIN SELECT RAISE(ABORT, 'a received notice is never deleted'); END;
"""

MIGRATIONS: tuple[str, ...] = (_V1,)
"""``MIGRATIONS[k]`` takes a database from schema version ``k`` to ``k + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (or create) the workflow database at ``path``, migrated to :data:`SCHEMA_VERSION`.

    The connection is in autocommit mode: writers open their own ``BEGIN IMMEDIATE``
    transaction (see :func:`transaction`).

    Raises
    ------
    StoreError
        Damaged file, or an SQLite file that is not a RIBIN workflow database.
    FormatVersionError
        Written by a newer schema than this RIBIN knows.
    """
    path = Path(path)
    if not create and not path.is_file():
        raise StoreError(f"{path}: no workflow database")
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the workflow database ({exc})") from None
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        _migrate(db, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path}: damaged or not an SQLite database ({exc})") from None
    except BaseException:
        db.close()
        raise
    return db


def _check_identity(db: sqlite3.Connection, path: Path) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    application = db.execute("PRAGMA application_id").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if application != APPLICATION_ID and (tables or version):
        raise StoreError(f"{path}: an SQLite file, but not a RIBIN workflow database")
    if version > SCHEMA_VERSION:
        raise FormatVersionError(
            f"{path}: written by workflow schema {version}, this RIBIN reads up to "
            f"{SCHEMA_VERSION} (upgrade RIBIN)"
        )
    return version


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    if _check_identity(db, path) == SCHEMA_VERSION:
        return
    with transaction(db):
        version = _check_identity(db, path)  # again, under the write lock
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {step + 1}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (triggers hold ``;`` inside BEGIN...END)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: takes the write lock at once)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def check(db: sqlite3.Connection) -> list[str]:
    """Problems found by SQLite's own checks (empty when the database is sound)."""
    problems = []
    rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    if rows != ["ok"]:
        problems += [f"integrity: {r}" for r in rows[:20]]
    for row in db.execute("PRAGMA foreign_key_check").fetchall()[:20]:
        problems.append(f"foreign key: {row[0]} row {row[1]} names a missing {row[2]}")
    return problems
