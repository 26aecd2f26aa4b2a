"""The embedded state store: one SQLite file, WAL mode, versioned schema."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from reconciler.errors import OperationalError
from reconciler.state.base import Intent, IntentOutcome, InventoryEntry, RunRecord, RunResult

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
)
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteStore:
    """`StateStore` on SQLite: every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OperationalError(
                f"the state store {self.path} has schema version {version}; this reconciler"
                f" knows up to {SCHEMA_VERSION}: upgrade reconciler"
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                _run_script(self._db, MIGRATIONS[number])
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise OperationalError(f"state store {self.path}: {exc}") from None
        return int(cursor.lastrowid or 0)

    # --- inventory ------------------------------------------------------------------

    def inventory(self, target: str | None = None) -> dict[str, InventoryEntry]:
        sql = (
            "SELECT id, target, kind, digest, revision, adopted, updated_at, spec,"
            " fingerprints, protect, deletion_policy FROM inventory"
        )
        rows = (
            self._db.execute(sql + " WHERE target = ? ORDER BY id", (target,))
            if target is not None
            else self._db.execute(sql + " ORDER BY id")
        )
        return {
            row[0]: InventoryEntry(
                id=row[0],
                target=row[1],
                kind=row[2],
                digest=row[3],
                revision=row[4],
                adopted=bool(row[5]),
                updated_at=row[6],
                spec=json.loads(row[7]),
                fingerprints=json.loads(row[8]),
                protect=bool(row[9]),
                deletion_policy=row[10],
            )
            for row in rows
        }

    def record_applied(self, entry: InventoryEntry) -> None:
        self._write(
            "INSERT INTO inventory (id, target, kind, digest, revision, adopted, updated_at,"
            " spec, fingerprints, protect, deletion_policy)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET digest = excluded.digest,"
            " revision = excluded.revision, updated_at = excluded.updated_at,"
            " spec = excluded.spec, fingerprints = excluded.fingerprints,"
            " protect = excluded.protect, deletion_policy = excluded.deletion_policy",
            (
                entry.id,
                entry.target,
                entry.kind,
                entry.digest,
                entry.revision,
                int(entry.adopted),
                entry.updated_at or time.time(),
                json.dumps(entry.spec, sort_keys=True),
                json.dumps(entry.fingerprints, sort_keys=True),
                int(entry.protect),
                entry.deletion_policy,
            ),
        )

    def forget(self, resource: str) -> None:
        self._write("DELETE FROM inventory WHERE id = ?", (resource,))

    # --- runs -----------------------------------------------------------------------

    def begin_run(
        self,
        command: str,
        *,
        revision: str | None,
        profile: str | None,
        plan: dict[str, Any] | None,
    ) -> int:
        return self._write(
            "INSERT INTO runs (command, revision, profile, started_at, result, plan)"
            " VALUES (?, ?, ?, ?, 'running', ?)",
            (command, revision, profile, time.time(), json.dumps(plan) if plan else None),
        )

    def finish_run(self, run_id: int, result: RunResult, actions: list[dict[str, Any]]) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, result = ?, actions = ? WHERE id = ?",
            (time.time(), result, json.dumps(actions), run_id),
        )

    def runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT id, command, revision, profile, started_at, result, finished_at, plan,"
            " actions FROM runs ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            RunRecord(
                id=row[0],
                command=row[1],
                revision=row[2],
                profile=row[3],
                started_at=row[4],
                result=row[5],
                finished_at=row[6],
                plan=json.loads(row[7]) if row[7] else None,
                actions=json.loads(row[8]) if row[8] else None,
            )
            for row in rows
        ]

    # --- intents --------------------------------------------------------------------

    def open_intent(self, run_id: int, resource: str, action: str, call: str) -> int:
        return self._write(
            "INSERT INTO intents (run_id, resource, action, call, started_at, outcome)"
            " VALUES (?, ?, ?, ?, ?, 'pending')",
            (run_id, resource, action, call, time.time()),
        )

    def close_intent(self, intent_id: int, *, ok: bool, error: str | None = None) -> None:
        outcome: IntentOutcome = "ok" if ok else "failed"
        self._write(
            "UPDATE intents SET finished_at = ?, outcome = ?, error = ? WHERE id = ?",
            (time.time(), outcome, error, intent_id),
        )

    def pending_intents(self) -> list[Intent]:
        rows = self._db.execute(
            "SELECT id, run_id, resource, action, call, started_at, outcome, finished_at, error"
            " FROM intents WHERE outcome = 'pending' ORDER BY id"
        )
        return [Intent(*row) for row in rows]

    def close(self) -> None:
        self._db.close()


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would commit the open transaction; run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
