"""The state stores, SQLite and PostgreSQL alike: inventory, runs, intents and locks
survive a reopen; migrations; copying a state from one to the other."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import InputError, OperationalError
from reconciler.state import InventoryEntry, KeptStores, LockHolder, SqliteStore, open_store
from reconciler.state.migrate import copy_state
from reconciler.state.sql import SqlStore
from reconciler.state.sqlite import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str, tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(url, tmp_path)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def reopen(url: str, tmp_path: Path) -> SqlStore:
    opened = open_store(url, tmp_path)
    assert isinstance(opened, SqlStore)
    return opened


def test_sqlite_opens_in_wal_mode_with_current_schema(tmp_path: Path) -> None:
    store = open_store("sqlite:///.reconciler/state.db", tmp_path)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / ".reconciler" / "state.db"
    assert store.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_both_backends_have_the_same_schema_version(store: SqlStore) -> None:
    assert store.schema_version == SCHEMA_VERSION


def test_inventory_survives_reopen_and_keeps_adoption(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    store.record_applied(
        InventoryEntry(
            "pachyderm:Repo/default/a", "pachyderm", "Repo", "sha256:1", "abc", adopted=True
        )
    )
    store.record_applied(
        InventoryEntry(
            "insights:Package/p",
            "insights",
            "Package",
            "sha256:2",
            None,
            adopted=False,
            spec={"version": "1.0.0"},
            fingerprints={"files/a.q": "sha256:9"},
            protect=True,
            deletion_policy="Orphan",
        )
    )
    store.record_applied(
        InventoryEntry(
            "pachyderm:Repo/default/a", "pachyderm", "Repo", "sha256:3", "def", adopted=False
        )
    )
    store.close()
    again = reopen(url, tmp_path)
    entries = again.inventory("pachyderm")
    assert list(entries) == ["pachyderm:Repo/default/a"]
    entry = entries["pachyderm:Repo/default/a"]
    assert (entry.digest, entry.revision, entry.adopted) == ("sha256:3", "def", True)
    package = again.inventory()["insights:Package/p"]
    assert package.spec == {"version": "1.0.0"}
    assert package.fingerprints == {"files/a.q": "sha256:9"}
    assert (package.protect, package.deletion_policy) == (True, "Orphan")
    again.forget("insights:Package/p")
    assert set(again.inventory()) == {"pachyderm:Repo/default/a"}
    again.close()


def test_runs_and_intents(store: SqlStore, url: str, tmp_path: Path) -> None:
    run = store.begin_run(
        "apply", revision="abc", profile=None, plan={"actions": []}, targets=("pachyderm",)
    )
    entry = InventoryEntry("pachyderm:Repo/default/b", "pachyderm", "Repo", "sha256:5", "r", False)
    first = store.open_intent(run, "pachyderm:Repo/default/a", "create", "CreateRepo")
    second = store.open_intent(run, "pachyderm:Repo/default/b", "create", "CreateRepo", entry)
    store.close_intent(first, outcome="ok")
    # A run killed here leaves `second` pending: the next run must find it, with the
    # inventory entry it was about to record.
    store.close()
    store = reopen(url, tmp_path)
    (pending,) = store.pending_intents()
    assert (pending.id, pending.resource, pending.call) == (
        second,
        "pachyderm:Repo/default/b",
        "CreateRepo",
    )
    assert pending.entry == entry
    store.close_intent(second, outcome="failed", error="refused")
    assert store.pending_intents() == []
    store.finish_run(run, "partial", [{"id": "pachyderm:Repo/default/a", "result": "ok"}])
    (record,) = store.runs()
    assert (record.command, record.result, record.revision) == ("apply", "partial", "abc")
    assert record.plan == {"actions": []}
    assert record.actions == [{"id": "pachyderm:Repo/default/a", "result": "ok"}]
    assert store.runs(target="pachyderm") == [record]
    assert store.runs(target="insights") == []
    store.close()


def test_a_finished_create_is_in_the_inventory_the_moment_its_intent_closes(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    # Closing the intent and recording the entry are one transaction: a kill right after
    # the close cannot leave a created resource that neither the intent log nor the
    # inventory knows (the next run would call it adopted).
    run = store.begin_run("apply", revision=None, profile=None, plan=None, targets=("p",))
    entry = InventoryEntry("p:Repo/default/a", "p", "Repo", "sha256:1", None, False)
    intent = store.open_intent(run, entry.id, "create", "create", entry)
    store.close_intent(intent, outcome="ok", record=entry)
    store.close()
    store = reopen(url, tmp_path)
    assert store.pending_intents() == []
    assert store.inventory()[entry.id].adopted is False
    store.close()


def test_abandon_closes_a_dead_runs_intents_on_the_locked_targets_only(store: SqlStore) -> None:
    dead = store.begin_run("apply", revision=None, profile=None, plan=None, targets=("p",))
    other = store.begin_run("apply", revision=None, profile=None, plan=None, targets=("i",))
    store.open_intent(dead, "p:Repo/default/a", "create", "create")
    kept = store.open_intent(other, "i:Package/x", "create", "create")
    assert store.abandon(("p",)) == 1
    assert [i.id for i in store.pending_intents()] == [kept]
    results = {r.id: r.result for r in store.runs()}
    assert results == {dead: "interrupted", other: "running"}


def test_a_create_whose_answer_was_lost_stays_open_until_a_run_has_looked(
    store: SqlStore, url: str, tmp_path: Path
) -> None:
    run = store.begin_run("apply", revision=None, profile=None, plan=None, targets=("p",))
    entry = InventoryEntry("p:Repo/default/a", "p", "Repo", "sha256:1", None, False)
    intent = store.open_intent(run, entry.id, "create", "create", entry)
    store.close_intent(intent, outcome="unknown", error="timed out, then: already exists")
    store.finish_run(run, "partial", [])
    store.close()
    store = reopen(url, tmp_path)
    # Not a killed run's: the next run's abandon leaves it for the looking.
    assert store.abandon(("p",)) == 0
    (unknown,) = store.pending_intents()
    assert (unknown.id, unknown.outcome, unknown.entry) == (intent, "unknown", entry)
    store.close_intent(intent, outcome="ok", error=unknown.error, record=unknown.entry)
    assert store.pending_intents() == []
    assert store.inventory()[entry.id].adopted is False
    store.close()


def holder(target: str, token: str, pid: int, *, at: float, host: str = "h1") -> LockHolder:
    return LockHolder(target, token, host, pid, "apply", "rev1", at, at)


def test_a_lock_goes_to_one_holder_until_released_or_stale(store: SqlStore) -> None:
    now = time.time()
    first = store.acquire_lock(holder("p", "A", 1, at=now), stale_before=now - 60)
    assert first.token == "A"
    second = store.acquire_lock(holder("p", "B", 2, at=now), stale_before=now - 60)
    assert (second.token, second.pid, second.revision) == ("A", 1, "rev1")
    assert store.heartbeat("A", now + 30) == 1
    # 70 s later, A's last heartbeat (now + 30) is 40 s old: still alive.
    later = now + 70
    assert store.acquire_lock(holder("p", "B", 2, at=later), stale_before=later - 60).token == "A"
    # 100 s later without a heartbeat: A is taken for dead.
    stale = now + 100
    assert store.acquire_lock(holder("p", "B", 2, at=stale), stale_before=stale - 60).token == "B"
    store.release_lock("p", "A")  # A's late release cannot free B's lock
    assert store.locks()["p"].token == "B"
    assert store.heartbeat("A", stale) == 0
    store.release_lock("p", "B")
    assert store.locks() == {}


def test_take_over_and_break(store: SqlStore) -> None:
    now = time.time()
    store.acquire_lock(holder("p", "A", 1, at=now), stale_before=now - 60)
    assert store.take_over_lock(holder("p", "C", 3, at=now), from_token="not-A").token == "A"
    assert store.take_over_lock(holder("p", "C", 3, at=now), from_token="A").token == "C"
    broken = store.break_lock("p")
    assert broken is not None and broken.token == "C"
    assert store.break_lock("p") is None


def test_sqlite_state_of_an_older_version_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number in range(2):
        for statement in MIGRATIONS[number].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute(
        "INSERT INTO inventory (id, target, kind, digest, revision, adopted, updated_at)"
        " VALUES ('p:Repo/default/a', 'p', 'Repo', 'sha256:1', NULL, 0, 1.0)"
    )
    db.execute("INSERT INTO runs (command, started_at, result) VALUES ('apply', 1.0, 'succeeded')")
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert list(store.inventory()) == ["p:Repo/default/a"]
    (run,) = store.runs()
    assert run.targets == ()
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(OperationalError, match="upgrade reconciler"):
        SqliteStore(path)


def test_newer_postgres_schema_is_refused(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    reopen(postgres_url, tmp_path).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE reconciler_schema SET version = version + 1")
    with pytest.raises(OperationalError, match="upgrade reconciler"):
        open_store(postgres_url, tmp_path)


STALLS = """
import os, signal, sys
from pathlib import Path
from reconciler.state import InventoryEntry, open_store
store = open_store(sys.argv[1], Path("."))
with store._transaction():
    store.record_applied(InventoryEntry(sys.argv[2], "pachyderm", "Repo", "stalled", None, False))
    print("in", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # a runner stopped halfway through its write
"""


def test_a_runner_stopped_inside_a_transaction_does_not_hold_its_rows_for_ever(
    postgres_url: str, tmp_path: Path
) -> None:
    rid = "pachyderm:Repo/p/r"
    reopen(postgres_url, tmp_path).close()
    stalled = subprocess.Popen(
        [sys.executable, "-c", STALLS, postgres_url, rid], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stalled.stdout is not None and stalled.stdout.readline().strip() == "in"
        store = reopen(postgres_url, tmp_path)
        written: list[bool] = []

        def write() -> None:
            store.record_applied(InventoryEntry(rid, "pachyderm", "Repo", "ours", None, False))
            written.append(True)

        # The same row, locked by the stopped runner: the server ends its session once
        # idle in its transaction (STALLED_TRANSACTION), and this write goes through.
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(120)
        assert written == [True], "a stopped runner's transaction still blocks the row"
        assert store.inventory()[rid].digest == "ours"
        store.close()
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
        stalled.kill()
        stalled.wait(30)


def test_runners_starting_together_migrate_postgres_once(postgres_url: str, tmp_path: Path) -> None:
    code = (
        "import sys; from reconciler.state import open_store;"
        " s = open_store(sys.argv[1], __import__('pathlib').Path('.')); print(s.schema_version)"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in starts]
    assert [p.returncode for p in starts] == [0] * 4
    assert outputs == [str(SCHEMA_VERSION)] * 4


def test_an_unreachable_postgres_is_an_operational_error_without_the_password(
    tmp_path: Path,
) -> None:
    with pytest.raises(OperationalError) as raised:
        open_store("postgresql://me:s3cret@127.0.0.1:9/state", tmp_path)
    assert "s3cret" not in str(raised.value)
    assert "postgresql://me:***@127.0.0.1:9/state" in str(raised.value)


def test_unsupported_url_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not supported"):
        open_store("mysql://db/state", tmp_path)


def test_a_sqlite_state_is_copied_into_postgres_whole(postgres_url: str, tmp_path: Path) -> None:
    source = SqliteStore(tmp_path / "s.db")
    source.record_applied(
        InventoryEntry("p:Repo/default/a", "p", "Repo", "sha256:1", "r1", adopted=True)
    )
    run = source.begin_run("apply", revision="r1", profile=None, plan=None, targets=("p",))
    source.open_intent(run, "p:Repo/default/a", "create", "create")
    source.finish_run(run, "succeeded", [])
    destination = reopen(postgres_url, tmp_path)
    counts = copy_state(source, destination)
    assert counts == {"inventory": 1, "runs": 1, "intents": 1, "meta": 0}
    assert destination.inventory() == source.inventory()
    assert destination.runs() == source.runs()
    # Ids carry on after the copied ones.
    assert destination.begin_run("apply", revision=None, profile=None, plan=None) == run + 1
    with pytest.raises(OperationalError, match="already holds state"):
        copy_state(source, destination)
    destination.close()
    source.close()


def test_a_state_with_a_lock_held_is_not_copied(tmp_path: Path) -> None:
    source = SqliteStore(tmp_path / "a.db")
    now = time.time()
    source.acquire_lock(holder("p", "A", os.getpid(), at=now), stale_before=now - 60)
    with pytest.raises(OperationalError, match="locks held"):
        copy_state(source, SqliteStore(tmp_path / "b.db"))


def test_a_state_identity_is_made_once_and_read_without_writing(tmp_path: Path) -> None:
    """Saved plans are signed with the state's key: made by the first run, then only
    read (a plan role that may not write still signs with it)."""
    store = SqliteStore(tmp_path / "state.db")
    first = store.identity()
    assert store.identity() == first and len(first.key) == 32
    store._db.execute("PRAGMA query_only = ON")  # as a role that may only read
    assert store.identity() == first
    store.close()


def test_postgres_schemas_keep_states_apart(postgres_url: str) -> None:
    """Many sources on one database (`serve --config`): one schema each, made on first
    use; the same target name in two of them is two targets."""
    from reconciler.state.postgres import PostgresStore

    separator = "&" if "?" in postgres_url else "?"
    team_a = PostgresStore(f"{postgres_url}{separator}schema=team_a")
    team_b = PostgresStore(f"{postgres_url}{separator}schema=team_b")
    try:
        entry = InventoryEntry("pachyderm:Repo/x/y", "pachyderm", "Repo", "d1", None, False)
        team_a.record_applied(entry)
        assert set(team_a.inventory()) == {"pachyderm:Repo/x/y"}
        assert team_b.inventory() == {}
        assert team_a.identity().lineage != team_b.identity().lineage
    finally:
        team_a.close()
        team_b.close()
    with pytest.raises(InputError, match="not a schema name"):
        PostgresStore(f"{postgres_url}{separator}schema=Robert%27);DROP")


def test_kept_stores_are_used_again_and_opened_anew_when_they_stopped_answering(
    url: str, tmp_path: Path
) -> None:
    """`serve` keeps state stores open between runs: the next run of a source gets the
    same one; one whose connection died is replaced by one that works; two runs at once
    never share one."""
    kept = KeptStores(open_store, capacity=4)
    first = kept.take(url, tmp_path)
    assert kept.take(url, tmp_path) is not first  # taken: a second run opens its own
    kept.give_back(url, tmp_path, first)
    assert kept.take(url, tmp_path) is first
    first.close()  # its connection is gone, as after a database restart
    kept.give_back(url, tmp_path, first)
    fresh = kept.take(url, tmp_path)
    assert fresh is not first and fresh.ping()
    kept.give_back(url, tmp_path, fresh)
    kept.forget(url, tmp_path)  # the source was let go
    assert not fresh.ping()


def test_kept_stores_are_bounded_and_closed_once_idle(tmp_path: Path) -> None:
    now = [0.0]
    kept = KeptStores(open_store, capacity=2, clock=lambda: now[0])
    stores = {}
    for name in ("a", "b", "c"):
        folder = tmp_path / name
        folder.mkdir()
        stores[name] = kept.take("sqlite:///state.db", folder)
        kept.give_back("sqlite:///state.db", folder, stores[name])
        now[0] += 10
    assert not stores["a"].ping()  # beyond the capacity: the one run longest ago
    assert stores["b"].ping() and stores["c"].ping()
    now[0] = 75.0  # b given back at 10, c at 20
    kept.expire(60)
    assert not stores["b"].ping() and stores["c"].ping()
    assert kept.take("sqlite:///state.db", tmp_path / "c") is stores["c"]
    kept.close()
