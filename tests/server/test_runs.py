"""What a run's report says when a replica loses its lease during the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler import checkout
from reconciler.errors import OperationalError
from reconciler.server import ServeOptions
from reconciler.server.hooks import Trigger
from reconciler.server.metrics import Metrics
from reconciler.server.runs import Runner
from reconciler.state.locks import LockLost


def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, lease_lost: bool) -> Runner:
    def closed(*args: object) -> None:
        # What the next statement of a replica paused inside a transaction meets:
        # PostgreSQL ended its session (idle_in_transaction_session_timeout).
        raise OperationalError("state store postgresql://db: the connection is closed")

    monkeypatch.setattr(checkout, "fetch", closed)
    made = Runner(ServeOptions(source=str(tmp_path)), lambda *args: None, Metrics())  # type: ignore[arg-type]
    asked = []

    def fence() -> None:
        asked.append(True)
        if lease_lost and len(asked) > 1:  # held when the run began, lost during it
            raise LockLost("this replica lost its lease on source s: no further call is made")

    made.fence = fence
    return made


def test_a_run_that_fails_after_its_lease_was_lost_says_so_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = runner(tmp_path, monkeypatch, lease_lost=True)
    asyncio.run(made(Trigger("schedule")))
    assert made.last is not None and made.last.result == "failed"
    assert made.last.error == (
        "this replica lost its lease on source s: no further call is made"
        " (the run stopped at: state store postgresql://db: the connection is closed)"
    )


def test_a_run_that_fails_with_its_lease_held_says_only_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = runner(tmp_path, monkeypatch, lease_lost=False)
    asyncio.run(made(Trigger("schedule")))
    assert made.last is not None
    assert made.last.error == "state store postgresql://db: the connection is closed"
