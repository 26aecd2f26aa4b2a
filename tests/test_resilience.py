"""Surviving faults, crashes and a second runner: the sandbox over real HTTP, the
command line as users run it (in-process, or as a process to kill)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic import Repository, write
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.app import stats_of
from reconciler.sandbox.insights import InsightsOptions
from reconciler.sandbox.store import Store
from reconciler.state import SqliteStore, open_store
from tests.conftest import run_cli
from tests.insights.world import World, deployment_manifest, package_manifest
from tests.pachyderm.helpers import served

FAST = InsightsOptions(deploy_delay=0.05)
# Nothing of the developer's may leak into the runs: no credentials, no CI settings.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("INSIGHTS_", "PACH"))}


def stats(db: Path) -> dict[str, Any]:
    store = Store(db)
    try:
        return stats_of(store)
    finally:
        store.close()


def deletes(calls: dict[str, int]) -> dict[str, int]:
    return {k: n for k, n in calls.items() if k.startswith("DELETE") or "/Delete" in k}


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
    )


@pytest.fixture
def sandbox_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    options = getattr(request, "param", SandboxOptions(insights=FAST))
    with served(create_app(tmp_path / "sandbox.db", options)) as url:
        yield url


def unowned(url: str, folder: Path) -> Repository:
    """Resources someone else made on the same platforms, by another reconciler state."""
    other = write(folder, 12, seed=99, url=url, prefix="theirs", state="sqlite:///theirs.db")
    assert run_cli("apply", "--yes", str(folder)) == 0
    return other


# --- faults -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox_url",
    [SandboxOptions(latency_ms=3, fail_rate=0.2, seed=11, insights=FAST)],
    indirect=True,
    ids=["20% faults"],
)
def test_200_resources_converge_through_20_percent_faults_in_three_runs(
    tmp_path: Path, sandbox_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = unowned(sandbox_url, tmp_path / "theirs")
    ours = write(tmp_path / "ours", 200, seed=5, url=sandbox_url)
    before = stats(tmp_path / "sandbox.db")
    runs = 0
    for runs in range(1, 4):  # noqa: B007 (the count is asserted)
        code = run_cli("apply", "--yes", "--prune", "--concurrency", "16", str(ours.folder))
        if code == 0 and run_cli("plan", "--detailed-exitcode", str(ours.folder)) == 0:
            break
    else:
        pytest.fail("200 resources did not converge in 3 applies:\n" + capsys.readouterr().err)
    after = stats(tmp_path / "sandbox.db")
    # The faults were real: calls failed and were retried.
    assert after["mutating"] - before["mutating"] > 200
    # Nothing was deleted: neither our data nor anything of theirs.
    assert deletes(after["calls"]) == deletes(before["calls"]) == {}
    assert set(before["persisted_data"]) <= set(after["persisted_data"])
    store = SqliteStore(ours.folder / "state.db")
    assert set(store.inventory()) == set(ours.ids)
    store.close()
    # Their resources are untouched: their own plan still says nothing changed.
    capsys.readouterr()
    assert run_cli("plan", "--detailed-exitcode", str(theirs.folder)) == 0, capsys.readouterr()
    print(f"converged in {runs} run(s)")


class FailingReads:
    """ASGI middleware: the sandbox, with every ListRepo answered 503 while `failing`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failing = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.failing and scope["type"] == "http" and scope["path"].endswith("/ListRepo"):
            body = b'{"code": 14, "message": "injected: unavailable", "details": []}'
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_an_observation_failure_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = FailingReads(create_app(tmp_path / "sandbox.db", SandboxOptions(insights=FAST)))
    with served(app) as url:
        repo = write(tmp_path / "m", 20, seed=3, url=url, target_options="retries: 1")
        assert run_cli("apply", "--yes", str(repo.folder)) == 0
        for manifest in sorted((repo.folder / "manifests").glob("*.yaml"))[1:]:
            manifest.unlink()  # all but the first group leave the manifests
        app.failing = True
        capsys.readouterr()
        assert run_cli("apply", "--yes", "--prune", "--allow-mass-delete", str(repo.folder)) == 1
        err = capsys.readouterr().err
        assert "cannot observe target 'pachyderm'" in err and "nothing was changed" in err
        assert deletes(stats(tmp_path / "sandbox.db")["calls"]) == {}
        store = SqliteStore(repo.folder / "state.db")
        assert set(store.inventory()) == set(repo.ids)
        store.close()
        # Once the platform answers again, the prune goes ahead.
        app.failing = False
        assert run_cli("apply", "--yes", "--prune", "--max-deletes", "100", str(repo.folder)) == 0
        assert deletes(stats(tmp_path / "sandbox.db")["calls"]) != {}


class LosesAnswer:
    """ASGI middleware: the first call that `suffix` names (a POST whose path ends so, or
    a predicate of the ASGI scope) is carried out, and its answer replaced by a gateway
    timeout, as an ingress that gave up waiting does."""

    def __init__(self, app: Any, suffix: str | Callable[[Any], bool]) -> None:
        self.app = app
        self.matches = suffix if callable(suffix) else _posted_to(suffix)
        self.lost = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        lose = scope["type"] == "http" and self.matches(scope)
        if not lose or self.lost:
            await self.app(scope, receive, send)
            return
        self.lost += 1

        async def dropped(message: Any) -> None:
            pass

        await self.app(scope, receive, dropped)
        await send({"type": "http.response.start", "status": 504, "headers": []})
        await send({"type": "http.response.body", "body": b"upstream request timeout"})


def test_a_create_whose_answer_was_lost_is_ours_on_the_next_run_with_no_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The retried registration of a package meets the package it made (409): the run
    # fails, and the next one finds it.
    made = "insights:Package/pkg1"
    app = LosesAnswer(
        create_app(tmp_path / "sandbox.db", SandboxOptions(insights=FAST)),
        "/packagemanager/v2/packages",
    )
    with served(app) as url:
        repo = write(tmp_path / "m", 8, seed=3, url=url, insights_every=2)
        assert made in repo.ids
        code = run_cli("apply", "--yes", str(repo.folder))
        assert app.lost == 1
        first = capsys.readouterr()
        # Tried again, the create met its own resource: the run says it may be there.
        assert code == 1 and made in first.out
        assert "the next run records it as ours if the target shows it" in first.out
        # The plan already counts it as ours, as created: nothing to do about it (what
        # waited on it was skipped, and is still to create).
        run_cli("plan", str(repo.folder))
        assert made not in capsys.readouterr().out
        assert run_cli("apply", "--yes", str(repo.folder)) == 0
        second = capsys.readouterr()
        assert "recovered 1 resource(s) that an earlier run created" in second.err
        assert made in second.err and made not in second.out
        assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
        after = stats(tmp_path / "sandbox.db")
    # Made once, never deleted, and not mistaken for adopted.
    assert deletes(after["calls"]) == {}
    assert after["restarts"] == {}
    store = SqliteStore(repo.folder / "state.db")
    try:
        assert set(store.inventory()) == set(repo.ids)
        assert store.inventory()[made].adopted is False
        assert store.pending_intents() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("suffix", "call", "kind"),
    [
        ("/CreateRepo", "POST /api/pfs_v2.API/CreateRepo", "pachyderm:Repo/"),
        (
            "/packagemanager/v2/deployments",
            "POST /packagemanager/v2/deployments",
            "insights:Deployment/",
        ),
    ],
    ids=["pachyderm repo", "insights deployment"],
)
def test_a_create_whose_answer_was_lost_is_not_sent_again(
    tmp_path: Path, suffix: str, call: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # pachd refuses a second create (AlreadyExists), the Package Manager a second deploy
    # of a deployed package (409): a retry looks first, finds what its first try made
    # (and waits for it), and the run succeeds.
    app = LosesAnswer(create_app(tmp_path / "sandbox.db", SandboxOptions(insights=FAST)), suffix)
    with served(app) as url:
        repo = write(tmp_path / "m", 8, seed=3, url=url, insights_every=2)
        assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr()
        assert app.lost == 1
        assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
        after = stats(tmp_path / "sandbox.db")
    made = [rid for rid in repo.ids if rid.startswith(kind)]
    assert after["calls"][call] == len(made)
    assert deletes(after["calls"]) == {} and after["restarts"] == {}
    store = SqliteStore(repo.folder / "state.db")
    try:
        assert not any(store.inventory()[rid].adopted for rid in made)
    finally:
        store.close()


def test_a_pipeline_call_whose_answer_was_lost_is_not_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pachd restarts a pipeline on every update, even an identical one, and refuses a
    # second create: a retry looks first, and finds its own call landed.
    app = LosesAnswer(
        create_app(tmp_path / "sandbox.db", SandboxOptions(insights=FAST)),
        "/pps_v2.API/CreatePipelineV2",
    )
    create = "POST /api/pps_v2.API/CreatePipelineV2"
    with served(app) as url:
        repo = write(tmp_path / "m", 8, seed=3, url=url, insights_every=2)
        assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr()
        assert app.lost == 1
        made = stats(tmp_path / "sandbox.db")
        assert made["calls"][create] == 2  # one call per pipeline, none sent twice
        manifest = repo.folder / "manifests" / "g00000.yaml"
        manifest.write_text(manifest.read_text().replace("# s0'", "# s0 v2'"))
        app.lost = 0
        assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr()
        assert app.lost == 1
        updated = stats(tmp_path / "sandbox.db")
        assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
    assert updated["calls"][create] == 3
    assert updated["restarts"] == {"pachyderm:Pipeline/proj0/s0": 1}


def _posted_to(suffix: str) -> Callable[[Any], bool]:
    return lambda scope: scope["method"] == "POST" and scope["path"].endswith(suffix)


def test_a_component_teardown_whose_answer_was_lost_still_brings_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bounce tears one pipeline down, then deploys it again. Its teardown's answer is
    # lost: the retry finds the component down already (404) and deploys it, rather
    # than fail and leave it down with nothing left to plan (the package is pushed).
    with ExitStack() as stack:
        world = World(tmp_path, False, stack, SandboxOptions(insights=FAST))
        app = LosesAnswer(
            world.sandbox.recorder,
            lambda scope: scope["method"] == "DELETE" and b"component=" in scope["query_string"],
        )
        world.url, world.connector = stack.enter_context(served(app)), None
        world.config()
        assert world.apply() == 0, capsys.readouterr()
        world.edit("pipelines/equities-rt.yaml", "maxWorkers: 10", "maxWorkers: 12")
        assert world.apply() == 0, capsys.readouterr()
        assert app.lost == 1
        assert world.stats()["restarts"] == {"insights:equities/pipeline:equities-rt": 1}
        assert world.run("plan", "--detailed-exitcode") == 0


@pytest.mark.parametrize("lost", ["teardown", "deploy"])
def test_a_redeploy_whose_answer_was_lost_goes_on_from_where_it_got_to(
    tmp_path: Path, lost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An env change redeploys: teardown, then deploy. With either answer lost, the
    # retry finishes the redeploy instead of tearing the new deployment down again.
    method = "DELETE" if lost == "teardown" else "POST"
    with ExitStack() as stack:
        world = World(tmp_path, False, stack, SandboxOptions(insights=FAST))
        app = LosesAnswer(
            world.sandbox.recorder,
            lambda scope: scope["method"] == method and "/deployments" in scope["path"],
        )
        world.url, world.connector = stack.enter_context(served(app)), None
        world.config()
        app.lost = 1  # the first apply's deploy answers
        assert world.apply() == 0, capsys.readouterr()
        app.lost = 0
        world.manifests(
            package_manifest(), deployment_manifest("  env: {equities-rt: {LOG_LEVEL: debug}}\n")
        )
        assert world.apply() == 0, capsys.readouterr()
        assert app.lost == 1
        stats = world.stats()
        assert stats["events"]["teardown equities"] == 1
        assert stats["events"]["deploy equities"] == 2  # the first apply's, and the redeploy
        assert set(stats["restarts"].values()) == {1}  # each component once
        assert stats["persisted_data"] == ["equities"]
        assert world.run("plan", "--detailed-exitcode") == 0


class UnavailableAfter:
    """ASGI middleware: once a POST ending with `after` has been answered, the next
    `count` POSTs ending with `failing` are answered 503 (pachd busy)."""

    def __init__(self, app: Any, after: str, failing: str, count: int) -> None:
        self.app, self.after, self.failing, self.left = app, after, failing, count
        self.armed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if self.armed and self.left and path.endswith(self.failing):
            self.left -= 1
            body = b'{"code": 14, "message": "injected: unavailable", "details": []}'
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
        if path.endswith(self.after):
            self.armed = True


def test_a_pipeline_update_whose_wait_failed_is_not_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The update lands, then every read of the pipeline's state fails: the action is
    # tried again, and finds its update there (one restart, not two).
    sandbox = create_app(tmp_path / "sandbox.db", SandboxOptions(insights=FAST))
    app = UnavailableAfter(sandbox, "/CreatePipelineV2", "/InspectPipeline", 0)
    with served(app) as url:
        repo = write(
            tmp_path / "m", 8, seed=3, url=url, insights_every=2, target_options="retries: 1"
        )
        assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr()
        manifest = repo.folder / "manifests" / "g00000.yaml"
        manifest.write_text(manifest.read_text().replace("# s0'", "# s0 v2'"))
        app.armed, app.left = False, 2  # both tries of the first read after the update
        assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr()
        assert app.left == 0
        assert "pachyderm:Pipeline/proj0/s0 (patch x2" in capsys.readouterr().out
        assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
        after = stats(tmp_path / "sandbox.db")
    assert after["restarts"] == {"pachyderm:Pipeline/proj0/s0": 1}


# --- crashes ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("first", [0, 10], ids=["trials 1-10", "trials 11-20"])
def test_an_apply_killed_at_any_moment_is_recovered_by_the_next(
    tmp_path: Path, first: int, capsys: pytest.CaptureFixture[str]
) -> None:
    options = SandboxOptions(latency_ms=40, insights=InsightsOptions(deploy_delay=0.1))
    db = tmp_path / "sandbox.db"
    with served(create_app(db, options)) as url:
        calibration = write(tmp_path / "calibration", 24, seed=first, url=url, prefix="cal")
        before = stats(db)["mutating"]
        run = spawn("apply", "--yes", str(calibration.folder))
        while stats(db)["mutating"] == before:  # interpreter start, load, plan
            time.sleep(0.01)
        started = time.monotonic()
        assert run.wait(60) == 0
        applying = time.monotonic() - started
        chance = random.Random(first)
        cut: list[int] = []
        for trial in range(first, first + 10):
            repo = write(tmp_path / f"t{trial}", 24, seed=trial, url=url, prefix=f"t{trial}")
            before = stats(db)["mutating"]
            run = spawn("apply", "--yes", str(repo.folder))
            if trial % 5:  # most kills land while calls are being made
                while stats(db)["mutating"] == before and run.poll() is None:
                    time.sleep(0.005)
                time.sleep(chance.uniform(0, applying * 0.6))
            else:  # the others at any moment, start-up included
                time.sleep(chance.uniform(0, 1.5))
            run.kill()
            run.wait(10)
            cut.append(stats(db)["mutating"] - before)
            capsys.readouterr()
            assert run_cli("apply", "--yes", str(repo.folder)) == 0, capsys.readouterr().err
            assert run_cli("plan", "--detailed-exitcode", str(repo.folder)) == 0
            store = SqliteStore(repo.folder / "state.db")
            owned = store.inventory()
            assert store.pending_intents() == []
            assert {r.result for r in store.runs()} <= {"succeeded", "interrupted"}
            store.close()
            assert set(owned) == set(repo.ids), f"trial {trial}: the inventory lost resources"
            # Everything was created by us, killed run or not: nothing counts as adopted.
            assert [rid for rid, e in owned.items() if e.adopted] == [], f"trial {trial}"
    print("mutating calls made by each killed apply:", cut)
    # The kills fell at different moments: before any call, and in the middle of applies.
    assert any(n > 0 for n in cut), cut
    assert len(set(cut)) > 2, cut


# --- a second runner --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_applies_started_together_one_waits_out_and_names_the_holder(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    state = "sqlite:///state.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    db = tmp_path / "sandbox.db"
    options = SandboxOptions(latency_ms=60, insights=FAST)
    with served(create_app(db, options)) as url:
        repo = write(tmp_path / "m", 30, seed=8, url=url, state=state)
        runs = [spawn("apply", "--yes", str(repo.folder)) for _ in range(2)]
        results = [(r.wait(120), *r.communicate()) for r in runs]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 1], results
        (loser_err,) = [err for code, _, err in results if code == 1]
        assert "is locked by apply on host" in loser_err and "pid" in loser_err, loser_err
        assert "--lock-timeout" in loser_err and "reconciler unlock" in loser_err
        # Only one apply called the platforms: each resource was created exactly once.
        calls = stats(db)["calls"]
        creates = {k: n for k, n in calls.items() if "/Create" in k or k.startswith("POST /pack")}
        assert calls.get("POST /api/pfs_v2.API/CreateProject") == sum(
            1 for rid in repo.ids if rid.startswith("pachyderm:Project/")
        ), creates
    store = open_store(state, repo.folder)
    try:
        assert store.locks() == {}
        assert set(store.inventory()) == set(repo.ids)
    finally:
        store.close()


def _until_locked(db: Path, process: subprocess.Popen[str]) -> None:
    """Until `process` holds a target's lock (on a loaded machine it may take seconds to
    start: a fixed sleep would let the second apply take the lock first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            store = SqliteStore(db)
            try:
                if store.locks():
                    return
            finally:
                store.close()
        time.sleep(0.02)
    raise AssertionError(f"the first apply never took a lock: {process.communicate()}")


def test_a_second_apply_with_a_lock_timeout_waits_for_the_first(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    with served(create_app(db, SandboxOptions(latency_ms=40, insights=FAST))) as url:
        repo = write(tmp_path / "m", 16, seed=4, url=url)
        first = spawn("apply", "--yes", str(repo.folder))
        _until_locked(repo.folder / "state.db", first)
        second = spawn("apply", "--yes", "--lock-timeout", "60", str(repo.folder))
        assert first.wait(60) == 0, first.communicate()
        code = second.wait(60)
        out, err = second.communicate()
        assert code == 0, err
        assert "No changes" in out
