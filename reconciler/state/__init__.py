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
from reconciler.state.sqlite import SqliteStore

__all__ = [
    "ALL_TARGETS",
    "Intent",
    "InventoryEntry",
    "KeptStore",
    "LockHolder",
    "RunRecord",
    "SqliteStore",
    "StateIdentity",
    "StateStore",
    "Suspension",
    "open_store",
    "suspension_of",
]


class KeptStore:
    """The state store of one source, kept open between its runs (`serve`): opening one
    is a connection and a schema check, on PostgreSQL the costliest part of a short run.
    A run takes it for itself (two runs never share one) and gives it back when it ended
    well; it is opened again when the URL changes or it stopped answering."""

    def __init__(self) -> None:
        self._kept: tuple[tuple[str, Path], StateStore] | None = None

    def take(self, url: str, root: Path) -> StateStore:
        kept, self._kept = self._kept, None
        if kept is not None:
            if kept[0] == (url, root) and kept[1].ping():
                return kept[1]
            kept[1].close()
        return open_store(url, root)

    def give_back(self, url: str, root: Path, store: StateStore) -> None:
        if self._kept is not None:  # another run kept one meanwhile: one is enough
            store.close()
            return
        self._kept = ((url, root), store)

    def close(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            kept[1].close()


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
