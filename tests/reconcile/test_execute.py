"""The executor: concurrency, retries, timeouts, skipping, interruption, and state."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from tenacity import RetryCallState

from reconciler.errors import PermanentError, RetryableError
from reconciler.execute import ActionResult, ExecuteOptions, Outcome
from reconciler.manifests import LoadOptions, Manifests, ResourceId, load
from reconciler.plan import Action, PlanOptions, Source
from reconciler.providers.base import Desired, Observation
from reconciler.reconcile import Planned, Request, Session, reconcile
from reconciler.retry import Backoff
from reconciler.state import SqliteStore
from reconciler.state.locks import LockOptions
from tests.fake import FakeConnector, FakePlatform, FakeProvider

FAST = ExecuteOptions(concurrency=8, backoff_initial=0, backoff_max=0)


def write_manifests(root: Path, repos: int = 0, chain: int = 0) -> Manifests:
    """A project with `repos` independent repos and a chain of `chain` pipelines on r0."""
    docs = ["apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: p}\nspec: {}\n"]
    docs += [
        f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: r{i}, project: p}}\nspec: {{}}\n"
        for i in range(max(repos, 1))
    ]
    source = "r0"
    for i in range(chain):
        docs.append(
            "apiVersion: pachyderm/v1\nkind: Pipeline\n"
            f"metadata: {{name: c{i}, project: p}}\n"
            f"spec: {{transform: {{image: x}}, input: {{pfs: {{repo: {source}, glob: /}}}}}}\n"
        )
        source = f"c{i}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "all.yaml").write_text("---\n".join(docs))
    return load(root, LoadOptions(env={}))


def run(
    manifests: Manifests,
    connector: FakeConnector,
    store: SqliteStore,
    options: ExecuteOptions = FAST,
    listener: object | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[Planned, Outcome]:
    async def scenario() -> tuple[Planned, Outcome]:
        async with Session(manifests, connector, store) as session:
            planned = await session.plan(PlanOptions(), Source("."))
            outcome = await session.apply(planned, options, listener, stop)  # type: ignore[arg-type]
            return planned, outcome

    return asyncio.run(scenario())


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db")


def test_concurrency_bound_is_respected(tmp_path: Path, store: SqliteStore) -> None:
    manifests = write_manifests(tmp_path / "m", repos=24)
    platform = FakePlatform(latency=0.01)
    connector = FakeConnector({"pachyderm": platform})
    _, outcome = run(manifests, connector, store, ExecuteOptions(concurrency=3))
    assert outcome.ok
    assert platform.max_in_flight == 3
    assert len(platform.calls) == 25


def test_a_failure_skips_exactly_its_dependents(tmp_path: Path, store: SqliteStore) -> None:
    manifests = write_manifests(tmp_path / "m", repos=4, chain=3)
    platform = FakePlatform()
    platform.faults[("create", "pachyderm:Pipeline/p/c0")] = [PermanentError("refused")]
    _, outcome = run(manifests, FakeConnector({"pachyderm": platform}), store)
    status = {str(r.id): r.status for r in outcome.results}
    assert status["pachyderm:Pipeline/p/c0"] == "failed"
    assert status["pachyderm:Pipeline/p/c1"] == "skipped"
    assert status["pachyderm:Pipeline/p/c2"] == "skipped"
    assert all(status[f"pachyderm:Repo/p/r{i}"] == "ok" for i in range(4))
    assert outcome.result == "partial"
    skipped = next(r for r in outcome.results if str(r.id) == "pachyderm:Pipeline/p/c2")
    assert "c0" in skipped.message or "c1" in skipped.message


def test_retryable_errors_are_retried_and_permanent_ones_not(
    tmp_path: Path, store: SqliteStore
) -> None:
    manifests = write_manifests(tmp_path / "m", repos=2)
    platform = FakePlatform()
    platform.faults[("create", "pachyderm:Repo/p/r0")] = [
        RetryableError("503"),
        RetryableError("reset"),
    ]
    platform.faults[("create", "pachyderm:Repo/p/r1")] = [
        PermanentError("quota"),
        PermanentError("x"),
    ]
    _, outcome = run(manifests, FakeConnector({"pachyderm": platform}), store)
    by_id = {str(r.id): r for r in outcome.results}
    assert by_id["pachyderm:Repo/p/r0"].status == "ok"
    assert by_id["pachyderm:Repo/p/r0"].calls == ("create x3",)
    assert by_id["pachyderm:Repo/p/r1"].status == "failed"
    # A permanent error is not retried: the second queued fault was never reached.
    assert len(platform.faults[("create", "pachyderm:Repo/p/r1")]) == 1


def test_retry_after_is_honoured_over_a_shorter_backoff() -> None:
    backoff = Backoff(attempts=5, initial=0.01, maximum=0.02)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    for error, expected in (
        (RetryableError("429", retry_after=7.5), 7.5),
        (RetryableError("503"), None),
    ):
        state.set_exception((type(error), error, None))
        wait = backoff._wait(state)
        assert wait == expected if expected else wait <= 0.04


def test_a_call_that_hangs_times_out_and_fails(tmp_path: Path, store: SqliteStore) -> None:
    manifests = write_manifests(tmp_path / "m")
    connector = FakeConnector()
    original = FakeConnector.__call__

    def hanging(self: FakeConnector, *args: object) -> object:
        provider = original(self, *args)  # type: ignore[arg-type]

        async def never(desired: Desired) -> None:
            await asyncio.sleep(3600)

        if provider.target == "pachyderm":
            provider.create = never  # type: ignore[method-assign]
        return provider

    connector.__class__ = type("Hanging", (FakeConnector,), {"__call__": hanging})
    options = ExecuteOptions(call_timeout=0.05, attempts=2, backoff_initial=0, backoff_max=0)
    _, outcome = run(manifests, connector, store, options)
    project = next(r for r in outcome.results if r.id.kind == "Project")
    assert project.status == "failed"
    assert "did not answer within 0.05s" in project.message
    assert "gave up after 2 tries" in project.message


def test_a_provider_bug_fails_its_action_only(tmp_path: Path, store: SqliteStore) -> None:
    manifests = write_manifests(tmp_path / "m", repos=2)
    platform = FakePlatform()
    platform.faults[("create", "pachyderm:Repo/p/r1")] = [ValueError("oops")]  # type: ignore[list-item]
    _, outcome = run(manifests, FakeConnector({"pachyderm": platform}), store)
    by_id = {str(r.id): r for r in outcome.results}
    assert by_id["pachyderm:Repo/p/r1"].status == "failed"
    assert (
        "internal error in the provider: ValueError: oops" in by_id["pachyderm:Repo/p/r1"].message
    )
    assert by_id["pachyderm:Repo/p/r0"].status == "ok"


class StopAfterFirst:
    """Sets the stop event (as Ctrl-C does) when the first action finishes."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.launched: list[ResourceId] = []

    def started(self, action: Action) -> None:
        self.launched.append(action.id)

    def finished(self, result: ActionResult) -> None:
        self.stop.set()


def test_interrupt_stops_launching_and_lets_calls_in_flight_finish(
    tmp_path: Path, store: SqliteStore
) -> None:
    manifests = write_manifests(tmp_path / "m", repos=6)
    platform = FakePlatform(latency=0.02)
    connector = FakeConnector({"pachyderm": platform})

    async def scenario() -> Outcome:
        stop = asyncio.Event()
        listener = StopAfterFirst(stop)
        async with Session(manifests, connector, store) as session:
            planned = await session.plan(PlanOptions(), Source("."))
            return await session.apply(planned, ExecuteOptions(concurrency=3), listener, stop)

    outcome = asyncio.run(scenario())
    counts = outcome.counts()
    assert outcome.result == "interrupted"
    # The project ran alone, then the stop came: no repo was started.
    assert counts == {"ok": 1, "failed": 0, "skipped": 0, "not started": 6}
    assert platform.in_flight == 0


def test_every_mutating_call_has_a_closed_intent_and_inventory_entry(
    tmp_path: Path, store: SqliteStore
) -> None:
    manifests = write_manifests(tmp_path / "m", repos=2, chain=2)
    platform = FakePlatform()
    platform.faults[("create", "pachyderm:Pipeline/p/c1")] = [PermanentError("refused")]
    run(manifests, FakeConnector({"pachyderm": platform}), store)
    rows = (
        sqlite3.connect(tmp_path / "state.db")
        .execute("SELECT resource, call, outcome, error FROM intents ORDER BY id")
        .fetchall()
    )
    assert store.pending_intents() == []
    assert {(r, c, o) for r, c, o, _ in rows} == {
        ("pachyderm:Project/p", "create", "ok"),
        ("pachyderm:Repo/p/r0", "create", "ok"),
        ("pachyderm:Repo/p/r1", "create", "ok"),
        ("pachyderm:Pipeline/p/c0", "create", "ok"),
        ("pachyderm:Pipeline/p/c1", "create", "failed"),
    }
    assert set(store.inventory()) == {
        "pachyderm:Project/p",
        "pachyderm:Repo/p/r0",
        "pachyderm:Repo/p/r1",
        "pachyderm:Pipeline/p/c0",
    }
    (record,) = store.runs()
    assert record.result == "partial"
    assert record.plan is not None and record.plan["summary"]["create"] == 5
    assert record.actions is not None and len(record.actions) == 5


def test_a_create_that_failed_after_a_lost_answer_is_looked_for_by_the_next_run(
    tmp_path: Path, store: SqliteStore
) -> None:
    manifests = write_manifests(tmp_path / "m", repos=2)
    platform = FakePlatform()
    # r0 was turned away (never carried out), r1's first answer was lost on the way.
    platform.faults[("create", "pachyderm:Repo/p/r0")] = [
        RetryableError("429", refused=True),
        PermanentError("quota"),
    ]
    platform.faults[("create", "pachyderm:Repo/p/r1")] = [
        RetryableError("reset"),
        PermanentError("already exists"),
    ]
    _, outcome = run(manifests, FakeConnector({"pachyderm": platform}), store)
    by_id = {str(r.id): r for r in outcome.results}
    assert "may have been carried out" not in by_id["pachyderm:Repo/p/r0"].message
    assert "may have been carried out" in by_id["pachyderm:Repo/p/r1"].message
    (unknown,) = store.pending_intents()
    assert (unknown.resource, unknown.outcome) == ("pachyderm:Repo/p/r1", "unknown")
    # Here the fault came before the platform made it: the next apply (under the locks)
    # does not find r1, settles the intent as failed, and creates it.
    request = Request("apply", PlanOptions(), Source("."), execute=FAST, lock=LockOptions())
    connector = FakeConnector({"pachyderm": platform})
    again = asyncio.run(reconcile(manifests, connector, store, request))
    assert again.recovered == ()
    assert again.outcome is not None and again.outcome.ok
    assert {str(r.id) for r in again.outcome.results} == {
        "pachyderm:Repo/p/r0",
        "pachyderm:Repo/p/r1",
    }
    assert store.pending_intents() == []
    outcomes = (
        sqlite3.connect(tmp_path / "state.db")
        .execute("SELECT outcome FROM intents WHERE resource = 'pachyderm:Repo/p/r1'")
        .fetchall()
    )
    assert sorted(o for (o,) in outcomes) == ["failed", "ok"]


def test_a_refresh_sees_the_targets_after_the_apply_under_the_same_locks(
    tmp_path: Path, store: SqliteStore
) -> None:
    """`serve` shows statuses after its apply: the refresh observes once more in the same
    session, while the run still holds the targets' locks, and only when calls were made."""
    manifests = write_manifests(tmp_path / "m", repos=2)
    connector = FakeConnector()
    platform = connector.platforms.setdefault("pachyderm", FakePlatform())
    request = Request(
        "apply", PlanOptions(), Source("."), execute=FAST, lock=LockOptions(), refresh=True
    )
    locked_during_refresh: list[bool] = []
    observe = FakeProvider.observe

    async def watched(self: FakeProvider) -> Observation:
        locked_during_refresh.append(bool(store.locks()))
        return await observe(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FakeProvider, "observe", watched)
        first = asyncio.run(reconcile(manifests, connector, store, request))
        again = asyncio.run(reconcile(manifests, connector, store, request))
    assert first.outcome is not None and len(first.outcome.results) == 3
    assert first.refreshed is not None and not first.refreshed.plan.pending
    assert {s.sync for s in first.refreshed.statuses()} == {"synced"}
    assert {s.sync for s in first.planned.statuses()} == {"missing"}
    assert platform.reads == 3  # plan, refresh, and the second run's plan: no refresh
    assert again.outcome is None and again.refreshed is None
    assert locked_during_refresh == [True, True, True]
