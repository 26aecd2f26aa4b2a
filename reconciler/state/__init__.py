"""Layer 4: what the reconciler remembers between runs.

Rule: imports layers 0-3 and the standard library (and psycopg, in its own module);
never a platform client, never the command line.

Three things are kept, behind one interface (`StateStore`), so that a PostgreSQL
backend can sit beside the embedded SQLite one:
- the inventory: every resource this reconciler created or adopted, with the digest of
  the spec it last applied and the revision it came from; only inventory members can
  ever be deleted;
- runs: what each plan or apply was asked, what it did, and how long it took;
- the intent log: each mutating call written before it is sent and closed after it
  answers, so a run killed between the two is found and reconciled next time.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import InputError, Problem
from reconciler.state.base import Intent, InventoryEntry, RunRecord, StateStore
from reconciler.state.sqlite import SqliteStore

__all__ = ["Intent", "InventoryEntry", "RunRecord", "SqliteStore", "StateStore", "open_store"]


def open_store(url: str, root: Path) -> StateStore:
    """The store a `state:` URL names; relative SQLite paths start at the manifests root."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return SqliteStore(path if path.is_absolute() else root / path)
    raise InputError(
        [
            Problem(
                "reconciler.yaml",
                0,
                0,
                f"state URL '{url}' is not supported",
                "use sqlite:///path/to/state.db",
            )
        ]
    )
