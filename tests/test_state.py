"""The embedded state store: inventory, runs and intents survive a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.errors import InputError, OperationalError
from reconciler.state import InventoryEntry, SqliteStore, open_store
from reconciler.state.sqlite import SCHEMA_VERSION


def test_opens_in_wal_mode_with_current_schema(tmp_path: Path) -> None:
    store = open_store("sqlite:///.reconciler/state.db", tmp_path)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / ".reconciler" / "state.db"
    assert store.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_inventory_survives_reopen_and_keeps_adoption(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
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
    again = SqliteStore(tmp_path / "s.db")
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


def test_runs_and_intents(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    run = store.begin_run("apply", revision="abc", profile=None, plan={"actions": []})
    first = store.open_intent(run, "pachyderm:Repo/default/a", "create", "CreateRepo")
    second = store.open_intent(run, "pachyderm:Repo/default/b", "create", "CreateRepo")
    store.close_intent(first, ok=True)
    # A run killed here leaves `second` pending: the next run must find it.
    store.close()
    store = SqliteStore(tmp_path / "s.db")
    (pending,) = store.pending_intents()
    assert (pending.id, pending.resource, pending.call) == (
        second,
        "pachyderm:Repo/default/b",
        "CreateRepo",
    )
    store.close_intent(second, ok=False, error="refused")
    assert store.pending_intents() == []
    store.finish_run(run, "partial", [{"id": "pachyderm:Repo/default/a", "result": "ok"}])
    (record,) = store.runs()
    assert (record.command, record.result, record.revision) == ("apply", "partial", "abc")
    assert record.plan == {"actions": []}
    assert record.actions == [{"id": "pachyderm:Repo/default/a", "result": "ok"}]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(OperationalError, match="upgrade reconciler"):
        SqliteStore(path)


def test_unsupported_url_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not supported"):
        open_store("mysql://db/state", tmp_path)
