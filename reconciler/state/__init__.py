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

import time
from collections import OrderedDict
from collections.abc import Callable
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


class KeptStores:
    """State stores kept open between runs (`serve`): opening one is a connection and a
    schema check, on PostgreSQL the costliest part of a short run. A run takes its own
    (two runs never share one) and gives it back when it ended well; it is opened again
    when it stopped answering. At most `capacity` are kept, those used last, and each is
    closed once idle for `expire`'s seconds: a database counts one connection per source
    recently run, not one per source."""

    def __init__(self, capacity: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[tuple[str, Path], tuple[StateStore, float]] = OrderedDict()
        self._clock = clock

    def take(self, url: str, root: Path) -> StateStore:
        kept = self._kept.pop((url, root), None)
        if kept is not None:
            if kept[0].ping():
                return kept[0]
            kept[0].close()
        return open_store(url, root)

    def give_back(self, url: str, root: Path, store: StateStore) -> None:
        key = (url, root)
        if key in self._kept or self.capacity <= 0:  # another run kept one meanwhile
            store.close()
            return
        self._kept[key] = (store, self._clock())
        while len(self._kept) > self.capacity:
            _, (oldest, _) = self._kept.popitem(last=False)
            oldest.close()

    def expire(self, idle: float) -> None:
        """Close the stores no run has taken for `idle` seconds."""
        now = self._clock()
        for key, (store, since) in list(self._kept.items()):
            if now - since >= idle:
                del self._kept[key]
                store.close()

    def forget(self, url: str, root: Path) -> None:
        kept = self._kept.pop((url, root), None)
        if kept is not None:
            kept[0].close()

    def close(self) -> None:
        while self._kept:
            _, (store, _) = self._kept.popitem()
            store.close()


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
