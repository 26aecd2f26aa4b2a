"""`reconciler state migrate`: copy a whole state (inventory, runs, intents) from one
store to another, typically from the embedded SQLite file into PostgreSQL when a team
moves its runs to shared CI runners."""

from __future__ import annotations

from reconciler.errors import OperationalError
from reconciler.state.sql import SqlStore


def copy_state(source: SqlStore, destination: SqlStore) -> dict[str, int]:
    """Rows copied per table. Refuses a destination that holds anything (two inventories
    merged would own each other's resources) and a source with a lock held (a run is
    writing to it)."""
    if source.location == destination.location:
        raise OperationalError("the source and the destination are the same store")
    held = source.locks()
    if held:
        names = ", ".join(f"{t} ({h.describe()})" for t, h in held.items())
        raise OperationalError(
            f"{source.location} has locks held: {names}. Let the runs finish (or"
            " `reconciler unlock` a dead one), then migrate; nothing was copied"
        )
    if not destination.is_empty():
        raise OperationalError(
            f"{destination.location} already holds state: migrate into an empty database"
            " (nothing was copied)"
        )
    return destination.load(source.dump())
