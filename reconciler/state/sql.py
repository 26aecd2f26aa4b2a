"""`StateStore` in SQL that SQLite and PostgreSQL both speak; a backend supplies the
connection, its parameter style and its migrations.

Every method is one statement or one short transaction, committed before it returns:
a run killed at any moment leaves the store as of its last completed call.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.state.base import (
    Closing,
    Intent,
    InventoryEntry,
    LockHolder,
    RunRecord,
    RunResult,
    StateIdentity,
    Suspension,
)

Row = tuple[Any, ...]

# The tables and columns `state migrate` copies, in an order that keeps references valid.
TABLES: dict[str, tuple[str, ...]] = {
    "inventory": (
        "id",
        "target",
        "kind",
        "digest",
        "revision",
        "adopted",
        "updated_at",
        "spec",
        "fingerprints",
        "protect",
        "deletion_policy",
    ),
    "runs": (
        "id",
        "command",
        "revision",
        "profile",
        "started_at",
        "finished_at",
        "result",
        "plan",
        "actions",
        "targets",
    ),
    "intents": (
        "id",
        "run_id",
        "resource",
        "action",
        "call",
        "started_at",
        "finished_at",
        "outcome",
        "error",
        "entry",
    ),
    "meta": ("name", "value"),
}
_INVENTORY = ", ".join(TABLES["inventory"])
_RUNS = "id, command, revision, profile, started_at, result, finished_at, plan, actions, targets"
_INTENTS = "id, run_id, resource, action, call, started_at, outcome, finished_at, error, entry"
_OPEN = "outcome IN ('pending', 'unknown')"
"""Intents whose outcome is not known; the same words as the partial index on them."""
_SUSPENDED = "suspended:"
_LOCKS = "target, token, host, pid, command, revision, since, heartbeat"


class SqlStore(ABC):
    """The shared statements, written with `?` for each parameter."""

    location: str

    def ping(self) -> bool:
        try:
            self._query("SELECT 1")
        except ReconcilerError:
            return False
        return True

    # --- what a backend supplies ----------------------------------------------------

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement (committed) and return its rows, if any."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Statements inside run in one transaction that writes at once (no upgrade
        deadlocks), committed on exit, rolled back on error."""

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def _after_import(self) -> None:  # noqa: B027 (most backends need nothing)
        """Rows were inserted with their ids: let generated ids continue after them."""

    # --- inventory ------------------------------------------------------------------

    def inventory(self, target: str | None = None) -> dict[str, InventoryEntry]:
        sql = f"SELECT {_INVENTORY} FROM inventory"
        rows = (
            self._query(sql + " WHERE target = ? ORDER BY id", (target,))
            if target is not None
            else self._query(sql + " ORDER BY id")
        )
        return {row[0]: _entry(row) for row in rows}

    def inventory_targets(self) -> set[str]:
        return {row[0] for row in self._query("SELECT DISTINCT target FROM inventory")}

    def record_applied(self, entry: InventoryEntry) -> None:
        self._query(
            f"INSERT INTO inventory ({_INVENTORY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        self._query("DELETE FROM inventory WHERE id = ?", (resource,))

    # --- runs -----------------------------------------------------------------------

    def begin_run(
        self,
        command: str,
        *,
        revision: str | None,
        profile: str | None,
        plan: dict[str, Any] | None,
        targets: tuple[str, ...] = (),
    ) -> int:
        rows = self._query(
            "INSERT INTO runs (command, revision, profile, started_at, result, plan, targets)"
            " VALUES (?, ?, ?, ?, 'running', ?, ?) RETURNING id",
            (
                command,
                revision,
                profile,
                time.time(),
                json.dumps(plan) if plan else None,
                json.dumps(sorted(targets)),
            ),
        )
        return int(rows[0][0])

    def finish_run(self, run_id: int, result: RunResult, actions: list[dict[str, Any]]) -> None:
        self._query(
            "UPDATE runs SET finished_at = ?, result = ?, actions = ? WHERE id = ?",
            (time.time(), result, json.dumps(actions), run_id),
        )

    def runs(self, limit: int = 20, target: str | None = None) -> list[RunRecord]:
        if target is None:
            rows = self._query(f"SELECT {_RUNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            # Targets are a JSON list: match the quoted name, then check exactly.
            rows = self._query(
                f"SELECT {_RUNS} FROM runs WHERE targets LIKE ? ORDER BY id DESC LIMIT ?",
                (f'%"{target}"%', limit),
            )
        records = [_run(row) for row in rows]
        return [r for r in records if target is None or target in r.targets]

    # --- intents --------------------------------------------------------------------

    def open_intent(
        self,
        run_id: int,
        resource: str,
        action: str,
        call: str,
        entry: InventoryEntry | None = None,
    ) -> int:
        rows = self._query(
            "INSERT INTO intents (run_id, resource, action, call, started_at, outcome, entry)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
            (
                run_id,
                resource,
                action,
                call,
                time.time(),
                json.dumps(entry.to_json(), sort_keys=True) if entry is not None else None,
            ),
        )
        return int(rows[0][0])

    def close_intent(
        self,
        intent_id: int,
        *,
        outcome: Closing,
        error: str | None = None,
        record: InventoryEntry | None = None,
    ) -> None:
        closing = (
            "UPDATE intents SET finished_at = ?, outcome = ?, error = ? WHERE id = ?",
            (time.time(), outcome, error, intent_id),
        )
        if record is None:
            self._query(*closing)  # one statement: atomic without a transaction around it
            return
        with self._transaction():
            self._query(*closing)
            self.record_applied(record)

    def pending_intents(self) -> list[Intent]:
        rows = self._query(f"SELECT {_INTENTS} FROM intents WHERE {_OPEN} ORDER BY id")
        return [_intent(row) for row in rows]

    def abandon(self, targets: tuple[str, ...]) -> int:
        wanted = set(targets)
        now = time.time()
        closed = 0
        with self._transaction():
            for intent in self.pending_intents():
                if intent.outcome == "pending" and intent.target in wanted:
                    self._query(
                        "UPDATE intents SET finished_at = ?, outcome = 'abandoned',"
                        " error = 'the run was killed before this call answered' WHERE id = ?",
                        (now, intent.id),
                    )
                    closed += 1
            for row in self._query(f"SELECT {_RUNS} FROM runs WHERE result = 'running'"):
                run = _run(row)
                if wanted & set(run.targets):
                    self._query(
                        "UPDATE runs SET result = 'interrupted', finished_at = ? WHERE id = ?",
                        (now, run.id),
                    )
        return closed

    # --- locks ----------------------------------------------------------------------

    def acquire_lock(self, holder: LockHolder, *, stale_before: float) -> LockHolder:
        return self._claim(holder, "locks.heartbeat < ? OR locks.token = ?", stale_before)

    def take_over_lock(self, holder: LockHolder, *, from_token: str) -> LockHolder:
        return self._claim(holder, "locks.token = ? OR locks.token = ?", from_token)

    def _claim(self, holder: LockHolder, condition: str, value: Any) -> LockHolder:
        # One statement: the database decides between two racing claimants.
        self._query(
            f"INSERT INTO locks ({_LOCKS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target) DO UPDATE SET token = excluded.token,"
            " host = excluded.host, pid = excluded.pid, command = excluded.command,"
            " revision = excluded.revision, since = excluded.since,"
            f" heartbeat = excluded.heartbeat WHERE {condition}",
            (*_lock_row(holder), value, holder.token),
        )
        current = self.locks().get(holder.target)
        return current if current is not None else holder

    def heartbeat(self, token: str, now: float) -> int:
        self._query("UPDATE locks SET heartbeat = ? WHERE token = ?", (now, token))
        rows = self._query("SELECT COUNT(*) FROM locks WHERE token = ?", (token,))
        return int(rows[0][0])

    def release_lock(self, target: str, token: str) -> None:
        self._query("DELETE FROM locks WHERE target = ? AND token = ?", (target, token))

    def break_lock(self, target: str) -> LockHolder | None:
        held = self.locks().get(target)
        if held is not None:
            self._query("DELETE FROM locks WHERE target = ? AND token = ?", (target, held.token))
        return held

    def locks(self) -> dict[str, LockHolder]:
        rows = self._query(f"SELECT {_LOCKS} FROM locks ORDER BY target")
        return {row[0]: LockHolder(*row) for row in rows}

    # --- identity: which state a saved plan was made against -------------------------

    _identity: StateIdentity | None = None

    def identity(self) -> StateIdentity:
        # Made once and never changed (`state migrate` copies it into an empty state): a
        # store kept open between runs reads it once.
        if self._identity is None:
            self._identity = self._read_identity()
        return self._identity

    def _read_identity(self) -> StateIdentity:
        values: dict[str, str] = dict(self._query("SELECT name, value FROM meta"))
        if "lineage" not in values or "plan_key" not in values:
            # Made once, by the first run that can write (a plan role that may only read
            # finds them made already). Racing writers agree: the first insert wins.
            fresh = {"lineage": str(uuid.uuid4()), "plan_key": secrets.token_hex(32)}
            for name, value in fresh.items():
                self._query(
                    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    (name, value),
                )
            values = dict(self._query("SELECT name, value FROM meta"))
        return StateIdentity(values["lineage"], bytes.fromhex(values["plan_key"]))

    # --- suspensions, kept in `meta` (copied by `state migrate` with it) -------------

    def suspend(self, suspension: Suspension) -> None:
        value = json.dumps(suspension.to_json(), sort_keys=True)
        self._query(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (_SUSPENDED + suspension.target, value),
        )

    def resume(self, target: str) -> Suspension | None:
        with self._transaction():
            lifted = self.suspensions().get(target)
            self._query("DELETE FROM meta WHERE name = ?", (_SUSPENDED + target,))
        return lifted

    def suspensions(self) -> dict[str, Suspension]:
        rows = self._query("SELECT name, value FROM meta WHERE name LIKE ?", (_SUSPENDED + "%",))
        found = {}
        for _, value in rows:
            data = json.loads(value)
            found[data["target"]] = Suspension(**data)
        return found

    # --- copying a whole state (`reconciler state migrate`) -------------------------

    def dump(self) -> Iterator[tuple[str, tuple[str, ...], list[Row]]]:
        for table, columns in TABLES.items():
            yield table, columns, self._query(f"SELECT {', '.join(columns)} FROM {table}")

    def load(self, tables: Iterator[tuple[str, tuple[str, ...], list[Row]]]) -> dict[str, int]:
        """Insert every row as it is, ids included, in one transaction."""
        self._identity = None  # the copied state's, from now on
        counts: dict[str, int] = {}
        with self._transaction():
            for table, columns, rows in tables:
                marks = ", ".join("?" for _ in columns)
                for row in rows:
                    self._query(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", row)
                counts[table] = len(rows)
            self._after_import()
        return counts

    def is_empty(self) -> bool:
        return not any(self._query(f"SELECT 1 FROM {table} LIMIT 1") for table in TABLES)


def _entry(row: Row) -> InventoryEntry:
    return InventoryEntry(
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


def _run(row: Row) -> RunRecord:
    return RunRecord(
        id=int(row[0]),
        command=row[1],
        revision=row[2],
        profile=row[3],
        started_at=row[4],
        result=row[5],
        finished_at=row[6],
        plan=json.loads(row[7]) if row[7] else None,
        actions=json.loads(row[8]) if row[8] else None,
        targets=tuple(json.loads(row[9] or "[]")),
    )


def _intent(row: Row) -> Intent:
    entry = InventoryEntry.from_json(json.loads(row[9])) if row[9] else None
    return Intent(
        id=int(row[0]),
        run_id=int(row[1]),
        resource=row[2],
        action=row[3],
        call=row[4],
        started_at=row[5],
        outcome=row[6],
        finished_at=row[7],
        error=row[8],
        entry=entry,
    )


def _lock_row(holder: LockHolder) -> Row:
    return (
        holder.target,
        holder.token,
        holder.host,
        holder.pid,
        holder.command,
        holder.revision,
        holder.since,
        holder.heartbeat,
    )
