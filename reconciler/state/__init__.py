"""Layer 4: what the reconciler remembers between runs.

Rule: imports layers 0-3 and the standard library (and psycopg, in `postgres.py`
alone); never a platform client, never the command line.

Four things are kept, behind one interface (`StateStore`), on SQLite (embedded, the
default) or PostgreSQL (shared by many runners), with the same numbered migrations:
- the inventory: every resource this reconciler created or adopted, with the digest of
  the spec it last applied and the revision it came from; only inventory members can
  ever be deleted;
- runs: what each apply was asked, what it did, and how long it took;
- the intent log: each mutating call written before it is sent and closed after it
  answers, so a run killed between the two is found and reconciled next time;
- locks: one apply per target at a time, with a heartbeat so a dead holder is noticed.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import InputError, Problem
from reconciler.state.base import (
    ALL_TARGETS,
    Intent,
    InventoryEntry,
    LockHolder,
    RunRecord,
    StateIdentity,
    StateStore,
    Suspension,
    suspension_of,
)
from reconciler.state.kept import KeptStores
from reconciler.state.sqlite import SqliteStore

__all__ = [
    "ALL_TARGETS",
    "Intent",
    "InventoryEntry",
    "KeptStores",
    "LockHolder",
    "RunRecord",
    "SqliteStore",
    "StateIdentity",
    "StateStore",
    "Suspension",
    "open_store",
    "suspension_of",
]


def open_store(url: str, root: Path, *, where: str = "reconciler.yaml") -> StateStore:
    """The store a `state:` URL names; relative SQLite paths start at the manifests root."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return SqliteStore(path if path.is_absolute() else root / path)
    if url.startswith(("postgresql://", "postgres://")):
        from reconciler.state.postgres import PostgresStore  # psycopg loads only when used

        return PostgresStore(url)
    raise InputError(
        [
            Problem(
                where,
                0,
                0,
                f"state URL '{url}' is not supported",
                "use sqlite:///path/to/state.db, or postgresql://user@host/database with"
                " the password in PGPASSWORD",
            )
        ]
    )
