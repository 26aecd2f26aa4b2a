"""Leases on sources, for `serve` replicas sharing one PostgreSQL.

Each source is owned by at most one replica at a time: the one holding its lease. A
lease has an expiry and a fencing token (raised at every claim): the owner renews it
while alive; when it stops renewing (killed, partitioned, paused), the lease expires and
another replica claims it with a higher token. Before each mutating call the owner
confirms its lease in one statement that succeeds only while the token is still its own
and unexpired, so a replica that wakes up after losing its lease makes no further call.

Claims use `SELECT ... FOR UPDATE SKIP LOCKED`: replicas claiming at once never wait for
each other and never take the same source. Triggers that reach any replica are written
to the source's row (`pending`) and announced with `NOTIFY` on the channel `CHANNEL`
(payload: the source), which every replica `LISTEN`s to on a connection of its own, so
the owner takes them at once; one whose notification is lost (its listener was
reconnecting) takes them at its next tick. Time is the database's
(`clock_timestamp()`): the replicas' clocks need not agree. The owner also publishes
what it saw of the source (`snapshot`: statuses and recent runs) for the other replicas'
web UI.

    reconciler_replicas (id PK, host, pid, started, heartbeat)
    reconciler_sources  (source PK, owner, token, expires, pending, snapshot, ...)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from reconciler.errors import RetryableError
from reconciler.redact import masked
from reconciler.state.postgres import connect

_SETUP_LOCK = 0x72736C73  # serializes table creation between replicas starting together
CHANNEL = "reconciler_requests"

NOW = "extract(epoch from clock_timestamp())"

SETUP = (
    """
    CREATE TABLE IF NOT EXISTS reconciler_replicas (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS reconciler_sources (
        source TEXT PRIMARY KEY,
        owner TEXT,
        token BIGINT NOT NULL DEFAULT 0,
        expires DOUBLE PRECISION NOT NULL DEFAULT 0,
        pending TEXT,
        snapshot TEXT,
        snapshot_token BIGINT NOT NULL DEFAULT 0
    )
    """,
)


@dataclass(frozen=True)
class Replica:
    id: str
    host: str
    pid: int
    heartbeat: float
    alive: bool


@dataclass(frozen=True)
class Owner:
    source: str
    owner: str | None
    token: int
    live: bool
    """The lease has not expired."""


class LeaseStore:
    """One replica's view of the leases. Every method is one short statement or
    transaction on its own connection; a failure is a RetryableError (the loop tries
    again at its next tick; a fence that cannot confirm refuses the call)."""

    def __init__(self, url: str, replica: str, lease: float, *, connect_timeout: int = 10) -> None:
        self.replica = replica
        self.lease = lease
        self.location = masked(url)
        self._url = url
        self._connect_timeout = connect_timeout
        self._listener: psycopg.Connection[Any] | None = None
        self._closed = False
        try:
            self._db = connect(url, connect_timeout)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                for statement in SETUP:
                    self._db.execute(statement.encode())
            self._listen()
        except psycopg.Error as exc:
            raise RetryableError(
                f"cannot use the coordination database {self.location}: {_first(exc)}"
            ) from None

    def _listen(self) -> None:
        listener = psycopg.connect(
            self._url, autocommit=True, connect_timeout=self._connect_timeout
        )
        listener.execute(f"LISTEN {CHANNEL}".encode())
        self._listener = listener

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            cursor = self._db.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise RetryableError(f"coordination database {self.location}: {_first(exc)}") from None

    def close(self) -> None:
        self._closed = True
        self._db.close()
        if self._listener is not None:
            self._listener.close()

    def wait(self, seconds: float) -> set[str]:
        """The sources for which a request was written (by any replica) within `seconds`,
        returning at the first; empty after `seconds` without one. A listener that broke
        is opened again here; while it cannot be, this waits out `seconds` (the ticks'
        `take` still finds every request)."""
        try:
            if self._closed:
                return set()
            if self._listener is None:
                self._listen()
            assert self._listener is not None
            sources = {n.payload for n in self._listener.notifies(timeout=seconds, stop_after=1)}
            if sources:  # others sent with it are already here: collect them too
                sources |= {n.payload for n in self._listener.notifies(timeout=0)}
            return sources
        except psycopg.Error:
            if self._closed:
                return set()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            time.sleep(seconds)
            return set()

    # --- replicas ------------------------------------------------------------------------

    def join(self, host: str, pid: int, sources: list[str]) -> None:
        """This replica, alive; and a row for each source of the configuration."""
        self._rows(
            f"INSERT INTO reconciler_replicas VALUES (%s, %s, %s, {NOW}, {NOW})"
            f" ON CONFLICT (id) DO UPDATE SET heartbeat = {NOW}",
            (self.replica, host, pid),
        )
        for source in sources:
            self._rows(
                "INSERT INTO reconciler_sources (source) VALUES (%s) ON CONFLICT DO NOTHING",
                (source,),
            )

    def beat(self) -> int:
        """A heartbeat; how many replicas are alive (this one included)."""
        rows = self._rows(
            f"WITH beat AS (UPDATE reconciler_replicas SET heartbeat = {NOW} WHERE id = %s)"
            f" SELECT count(*) FROM reconciler_replicas WHERE heartbeat > {NOW} - %s",
            (self.replica, self.lease),
        )
        return max(1, int(rows[0][0]))

    def replicas(self) -> list[Replica]:
        rows = self._rows(
            f"SELECT id, host, pid, heartbeat, heartbeat > {NOW} - %s FROM reconciler_replicas"
            " ORDER BY id",
            (self.lease,),
        )
        return [Replica(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    def leave(self) -> None:
        """Gone for good (a clean shutdown): leases and the replica's row released."""
        self._rows(
            "UPDATE reconciler_sources SET owner = NULL, expires = 0 WHERE owner = %s",
            (self.replica,),
        )
        self._rows("DELETE FROM reconciler_replicas WHERE id = %s", (self.replica,))

    # --- leases --------------------------------------------------------------------------

    def claim(self, limit: int, among: list[str]) -> dict[str, int]:
        """Up to `limit` of `among` whose lease is free or expired, each with its new
        token."""
        if limit <= 0:
            return {}
        try:
            with self._db.transaction():
                free = self._db.execute(
                    f"SELECT source FROM reconciler_sources WHERE source = ANY(%s)"
                    f" AND (owner IS NULL OR expires < {NOW}) ORDER BY source"
                    " FOR UPDATE SKIP LOCKED LIMIT %s".encode(),
                    (among, limit),
                ).fetchall()
                taken = {}
                for (source,) in free:
                    row = self._db.execute(
                        f"UPDATE reconciler_sources SET owner = %s, token = token + 1,"
                        f" expires = {NOW} + %s WHERE source = %s RETURNING token".encode(),
                        (self.replica, self.lease, source),
                    ).fetchone()
                    if row is not None:
                        taken[source] = int(row[0])
                return taken
        except psycopg.Error as exc:
            raise RetryableError(f"coordination database {self.location}: {_first(exc)}") from None

    def renew(self, held: dict[str, int]) -> dict[str, int]:
        """Of the leases this replica holds, those still its own (now renewed): one
        statement for all of them, as each tick renews every lease held."""
        if not held:
            return {}
        sources = sorted(held)
        rows = self._rows(
            f"UPDATE reconciler_sources s SET expires = {NOW} + %s"
            " FROM unnest(%s::text[], %s::bigint[]) AS h(source, token)"
            f" WHERE s.source = h.source AND s.token = h.token AND s.owner = %s"
            f" AND s.expires > {NOW} RETURNING s.source, s.token",
            (self.lease, sources, [held[s] for s in sources], self.replica),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def confirm(self, source: str, token: int) -> bool:
        """Renew one lease if it is still this replica's, by this token, unexpired."""
        rows = self._rows(
            f"UPDATE reconciler_sources SET expires = {NOW} + %s WHERE source = %s"
            f" AND owner = %s AND token = %s AND expires > {NOW} RETURNING 1",
            (self.lease, source, self.replica, token),
        )
        return bool(rows)

    def release(self, source: str, token: int) -> None:
        self._rows(
            "UPDATE reconciler_sources SET owner = NULL, expires = 0"
            " WHERE source = %s AND owner = %s AND token = %s",
            (source, self.replica, token),
        )

    def owners(self) -> dict[str, Owner]:
        rows = self._rows(f"SELECT source, owner, token, expires > {NOW} FROM reconciler_sources")
        return {r[0]: Owner(r[0], r[1], int(r[2]), bool(r[3])) for r in rows}

    # --- triggers and what the owner saw -----------------------------------------------

    def request(self, source: str, trigger: dict[str, Any]) -> None:
        """Ask the owner of `source` (whoever it is, or will be) for a run; a newer
        request replaces an older one, as triggers coalesce in one process."""
        self._rows(
            "WITH asked AS (UPDATE reconciler_sources SET pending = %s WHERE source = %s"
            f" RETURNING source) SELECT pg_notify('{CHANNEL}', source) FROM asked",
            (json.dumps(trigger), source),
        )

    def take(self, held: dict[str, int]) -> dict[str, dict[str, Any]]:
        """The requests waiting on the sources this replica holds, taken."""
        if not held:
            return {}
        rows = self._rows(
            "WITH taken AS (SELECT source, pending FROM reconciler_sources WHERE owner = %s"
            " AND source = ANY(%s) AND pending IS NOT NULL FOR UPDATE)"
            " UPDATE reconciler_sources s SET pending = NULL FROM taken"
            " WHERE s.source = taken.source RETURNING s.source, taken.pending",
            (self.replica, list(held)),
        )
        return {r[0]: json.loads(r[1]) for r in rows if r[1]}

    def publish(self, source: str, token: int, snapshot: dict[str, Any]) -> None:
        self._rows(
            "UPDATE reconciler_sources SET snapshot = %s, snapshot_token = %s"
            " WHERE source = %s AND owner = %s AND token = %s",
            (json.dumps(snapshot), token, source, self.replica, token),
        )

    def snapshot(self, source: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT snapshot FROM reconciler_sources WHERE source = %s", (source,))
        if not rows or rows[0][0] is None:
            return None
        data: dict[str, Any] = json.loads(rows[0][0])
        return data


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
