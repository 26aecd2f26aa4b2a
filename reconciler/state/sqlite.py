"""The embedded state store: one SQLite file, WAL mode, versioned schema.

Several processes may share the file (two applies started together): SQLite serialises
their writes, each waiting up to 30 seconds for the other's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.errors import OperationalError
from reconciler.state.sql import Row, SqlStore

# Each entry moves the schema one version up; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE inventory (
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        revision TEXT,
        adopted INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE INDEX inventory_target ON inventory (target);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        command TEXT NOT NULL,
        revision TEXT,
        profile TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        result TEXT NOT NULL,
        plan TEXT,
        actions TEXT
    );
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs (id),
        resource TEXT NOT NULL,
        action TEXT NOT NULL,
        call TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        outcome TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX intents_pending ON intents (outcome) WHERE outcome = 'pending';
    """,
    """
    ALTER TABLE inventory ADD COLUMN spec TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE inventory ADD COLUMN fingerprints TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE inventory ADD COLUMN protect INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inventory ADD COLUMN deletion_policy TEXT NOT NULL DEFAULT 'Delete';
    """,
    """
    CREATE TABLE locks (
        target TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        command TEXT NOT NULL,
        revision TEXT,
        since REAL NOT NULL,
        heartbeat REAL NOT NULL
    );
    ALTER TABLE intents ADD COLUMN entry TEXT;
    ALTER TABLE runs ADD COLUMN targets TEXT NOT NULL DEFAULT '[]';
    """,
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    """
    DROP INDEX intents_pending;
    CREATE INDEX intents_open ON intents (outcome) WHERE outcome IN ('pending', 'unknown');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteStore(SqlStore):
    """`StateStore` on SQLite: every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"sqlite:///{path}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise OperationalError(f"cannot open the state store {path}: {exc}") from None

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise OperationalError(
                f"the state store {self.path} has schema version {version}; this reconciler"
                f" knows up to {SCHEMA_VERSION}: upgrade reconciler"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._transaction():
                if self.schema_version > number:
                    continue  # another process migrated meanwhile
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise OperationalError(f"state store {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: two writers never deadlock upgrading.
        self._query("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._query("COMMIT")

    def close(self) -> None:
        self._db.close()
