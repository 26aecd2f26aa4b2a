"""The sandbox's memory: JSON documents by kind and key, and counters, in one SQLite file.

Each call of the emulated APIs is one transaction, so a sandbox served over HTTP and one
embedded in a run see the same state, and a killed run leaves it consistent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS counters (
    family TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (family, name)
);
"""


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # Durable against a killed process (WAL), not against a power cut: all a test
        # double needs. Waiting for the disk at every commit (two or three a call) stalled
        # the event loop, and every client's calls queued behind it.
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, key: str, body: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO objects (kind, key, body) VALUES (?, ?, ?)"
            " ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            (kind, key, json.dumps(body, sort_keys=True)),
        )

    def delete(self, kind: str, key: str) -> bool:
        cursor = self._db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (kind, key))
        return cursor.rowcount > 0

    def all(self, kind: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT body FROM objects WHERE kind = ? ORDER BY key", (kind,))
        found: list[dict[str, Any]] = json.loads("[" + ",".join(row[0] for row in rows) + "]")
        return found

    def keys(self, kind: str) -> list[str]:
        rows = self._db.execute("SELECT key FROM objects WHERE kind = ? ORDER BY key", (kind,))
        return [str(row[0]) for row in rows]

    def count(self, family: str, name: str, by: int = 1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO counters (family, name, value) VALUES (?, ?, ?)"
                " ON CONFLICT (family, name) DO UPDATE SET value = value + excluded.value",
                (family, name, by),
            )

    def counters(self, family: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT name, value FROM counters WHERE family = ? ORDER BY name", (family,)
        )
        return {name: int(value) for name, value in rows}

    def reset_counters(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM counters")

    def close(self) -> None:
        self._db.close()
