"""The shared state store: PostgreSQL through psycopg 3, for runners that share state.

CI runners are ephemeral and a scheduled `serve` runs elsewhere: they all need one
inventory, one run history and one set of locks. Give reconciler a database of its own
(or a schema of its own with `?options=-csearch_path%3Dreconciler`). The password never
sits in the URL in a manifests repository: libpq reads PGPASSWORD, ~/.pgpass or a
client certificate, and the URL is printed with any password masked.

The schema follows the same numbered migrations as SQLite's, applied on start under a
transaction-scoped advisory lock, so runners that start together migrate once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.sql

from reconciler import redact
from reconciler.errors import InputError, OperationalError, Problem, RetryableError
from reconciler.state.sql import Row, SqlStore

# Each entry moves the schema one version up, as SQLite's do; never edit one that shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE inventory (
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        revision TEXT,
        adopted INTEGER NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX inventory_target ON inventory (target);
    CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        command TEXT NOT NULL,
        revision TEXT,
        profile TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        result TEXT NOT NULL,
        plan TEXT,
        actions TEXT
    );
    CREATE TABLE intents (
        id BIGSERIAL PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES runs (id),
        resource TEXT NOT NULL,
        action TEXT NOT NULL,
        call TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        outcome TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX intents_pending ON intents (outcome) WHERE outcome = 'pending'
    """,
    """
    ALTER TABLE inventory ADD COLUMN spec TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE inventory ADD COLUMN fingerprints TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE inventory ADD COLUMN protect INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inventory ADD COLUMN deletion_policy TEXT NOT NULL DEFAULT 'Delete'
    """,
    """
    CREATE TABLE locks (
        target TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        command TEXT NOT NULL,
        revision TEXT,
        since DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE intents ADD COLUMN entry TEXT;
    ALTER TABLE runs ADD COLUMN targets TEXT NOT NULL DEFAULT '[]'
    """,
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    """
    DROP INDEX intents_pending;
    CREATE INDEX intents_open ON intents (outcome) WHERE outcome IN ('pending', 'unknown')
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x7265636F  # any constant, the same for every reconciler
STALLED_TRANSACTION = "10s"
"""How long the server lets a session sit idle inside a transaction before ending it.
Our transactions run their statements back to back; one left idle means its process was
stopped (SIGSTOP, a frozen VM, a replica past its lease): ended, its row locks go with
it, instead of every other runner's statement on those rows waiting until it wakes (a
`serve` replica waits on its event loop: its leases would lapse too)."""
LOCK_WAIT = "30s"
"""The longest a statement waits for a lock: then it fails (and its run, to be tried
again) rather than hang."""


def connect(url: str, connect_timeout: int) -> psycopg.Connection[Any]:
    """An autocommit connection with the bounds above (PostgreSQL's
    idle_in_transaction_session_timeout and lock_timeout, for this session only)."""
    db = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
    try:
        db.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('lock_timeout', %s, false)",
            (STALLED_TRANSACTION, LOCK_WAIT),
        )
    except BaseException:
        db.close()
        raise
    return db


def masked(url: str) -> str:
    """The URL fit to print: its credentials replaced by ***."""
    return redact.masked(url)


class PostgresStore(SqlStore):
    """`StateStore` on PostgreSQL. `?schema=NAME` in the URL keeps this state in a schema
    of its own (made when missing), so that many sources (`serve --config`) share one
    database without sharing inventory, locks or runs."""

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        self.location = masked(url)
        url, schema = _schema(url)
        try:
            self._db = connect(url, connect_timeout)
            if schema is not None:
                name = psycopg.sql.Identifier(schema)
                with self._db.transaction():  # two runners making it at once: one does
                    self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    self._db.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
                self._db.execute(psycopg.sql.SQL("SET search_path TO {}").format(name))
        except psycopg.Error as exc:
            # Unreachable or starting up: worth another try; bad credentials are not, but
            # libpq does not tell them apart reliably, and exit 1 is the same either way.
            raise RetryableError(
                f"cannot connect to the state store {self.location}: {_first_line(exc)}"
            ) from None
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS reconciler_schema (version INTEGER NOT NULL)"
            )
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise OperationalError(
                    f"the state store {self.location} has schema version {version}; this"
                    f" reconciler knows up to {SCHEMA_VERSION}: upgrade reconciler"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement.encode())
            self._db.execute("DELETE FROM reconciler_schema")
            self._db.execute("INSERT INTO reconciler_schema VALUES (%s)", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM reconciler_schema").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cursor = self._db.execute(sql.replace("?", "%s").encode(), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.OperationalError as exc:
            raise RetryableError(f"state store {self.location}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise OperationalError(f"state store {self.location}: {_first_line(exc)}") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                yield
        except psycopg.Error as exc:
            raise OperationalError(f"state store {self.location}: {_first_line(exc)}") from None

    def _after_import(self) -> None:
        for table in ("runs", "intents"):
            self._query(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
            )

    def close(self) -> None:
        self._db.close()


def _schema(url: str) -> tuple[str, str | None]:
    """The URL without its `schema` query parameter (libpq does not know it), and the
    schema it names."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if not schemas:
        return url, None
    schema = schemas[-1]
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise InputError(
            [
                Problem(
                    "state",
                    message=f"'{schema}' is not a schema name reconciler uses",
                    hint="lowercase letters, digits and '_', starting with a letter",
                )
            ]
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
