"""`reconciler status`, `unlock` and `state migrate`, as a user runs them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench.synthetic import write
from reconciler.state import LockHolder, SqliteStore, open_store
from tests.conftest import run_cli


def test_status_shows_managed_runs_and_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write(tmp_path / "m", 9, seed=1)
    assert run_cli("apply", "--yes", str(repo.folder)) == 0
    capsys.readouterr()
    assert run_cli("status", str(repo.folder)) == 0
    text = capsys.readouterr().out
    assert "in sync" in text and "manages" in text and "succeeded" in text
    # Drift: a manifest changes (what a fresh observation would show as a patch).
    manifest = sorted((repo.folder / "manifests").glob("*.yaml"))[0]
    manifest.write_text(manifest.read_text().replace("busybox:1.36", "busybox:1.37"))
    assert run_cli("status", "--format", "json", str(repo.folder)) == 0
    body = json.loads(capsys.readouterr().out)
    pachyderm = body["targets"]["pachyderm"]
    assert pachyderm["managed"]["count"] == sum(1 for i in repo.ids if i.startswith("pachyd"))
    assert pachyderm["managed"]["by_kind"]["Project"] >= 1
    assert pachyderm["lock"] is None
    (run,) = pachyderm["runs"]
    assert run["result"] == "succeeded"
    assert run["actions"] == {"ok": sum(1 for i in repo.ids if i.startswith("pachyderm:"))}
    drifted = {d["id"]: d["action"] for d in pachyderm["drift"]}
    assert drifted and set(drifted.values()) == {"patch"}
    assert pachyderm["in_sync"] is False
    assert body["targets"]["insights"]["in_sync"] is True


def test_status_of_an_unreachable_target_still_shows_state_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write(tmp_path / "m", 3, seed=1)
    assert run_cli("apply", "--yes", str(repo.folder)) == 0
    config = repo.folder / "reconciler.yaml"
    config.write_text(
        config.read_text().replace("url: 'embedded'}", "url: 'http://127.0.0.1:9', retries: 0}")
    )
    capsys.readouterr()
    assert run_cli("status", "--format", "json", str(repo.folder)) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["targets"]["pachyderm"]["drift"] is None
    assert "cannot observe" in body["targets"]["pachyderm"]["error"]
    assert body["targets"]["pachyderm"]["managed"]["count"] == 3


def hold(folder: Path, target: str, *, pid: int, host: str = "runner-7") -> None:
    store = open_store("sqlite:///state.db", folder)
    now = time.time()
    store.acquire_lock(
        LockHolder(target, "tok", host, pid, "apply", "abc123", now, now), stale_before=now - 60
    )
    store.close()


def test_a_lock_held_elsewhere_stops_apply_until_unlocked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write(tmp_path / "m", 3, seed=1)
    hold(repo.folder, "pachyderm", pid=4242)
    assert run_cli("apply", "--yes", str(repo.folder)) == 1
    err = capsys.readouterr().err
    assert "target 'pachyderm' is locked by apply on host runner-7 (pid 4242)" in err
    assert "revision abc123" in err and "reconciler unlock pachyderm" in err
    # A plan takes no lock.
    assert run_cli("plan", str(repo.folder)) == 0
    assert run_cli("status", str(repo.folder)) == 0
    assert "locked by apply on host runner-7" in capsys.readouterr().out
    # Without a terminal, unlock asks for --yes; with it, the lock goes.
    assert run_cli("unlock", "pachyderm", str(repo.folder)) == 1
    assert "--yes" in capsys.readouterr().err
    assert run_cli("unlock", "pachyderm", str(repo.folder), "--yes") == 0
    assert "unlocked 'pachyderm'" in capsys.readouterr().out
    assert run_cli("unlock", "pachyderm", str(repo.folder), "--yes") == 0
    assert "not locked" in capsys.readouterr().out
    assert run_cli("unlock", "nowhere", str(repo.folder), "--yes") == 3
    assert run_cli("apply", "--yes", str(repo.folder)) == 0


def test_a_dead_local_holder_is_taken_over_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    repo = write(tmp_path / "m", 3, seed=1)
    hold(repo.folder, "pachyderm", pid=dead.pid, host=socket.gethostname())
    assert run_cli("apply", "--yes", str(repo.folder)) == 0
    store = SqliteStore(repo.folder / "state.db")
    assert store.locks() == {}
    store.close()


def test_state_migrate_copies_sqlite_into_postgres(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write(tmp_path / "m", 6, seed=2)
    assert run_cli("apply", "--yes", str(repo.folder)) == 0
    capsys.readouterr()
    assert run_cli("state", "migrate", "--to", postgres_url, str(repo.folder)) == 0
    assert "copied 6 inventory, 1 runs" in capsys.readouterr().out
    config = repo.folder / "reconciler.yaml"
    config.write_text(config.read_text().replace("sqlite:///state.db", postgres_url))
    # The same project, now on PostgreSQL: nothing to do, everything still owned.
    assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
    capsys.readouterr()
    assert run_cli("status", "--format", "json", str(repo.folder)) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["state"] == postgres_url
    assert sum(t["managed"]["count"] for t in body["targets"].values()) == 6
    # A second migration into the same database is refused.
    assert (
        run_cli(
            "state",
            "migrate",
            "--from",
            "sqlite:///state.db",
            "--to",
            postgres_url,
            str(repo.folder),
        )
        == 1
    )
    assert "already holds state" in capsys.readouterr().err


def test_a_state_url_with_a_password_is_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write(tmp_path / "m", 3, seed=1, state="postgresql://me:hunter2@127.0.0.1:9/x")
    os.environ.pop("PGPASSWORD", None)
    assert run_cli("plan", str(repo.folder)) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err and "me:***@127.0.0.1:9" in err
