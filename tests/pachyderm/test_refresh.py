"""The refresh after an apply (what `serve` shows) reads again what the apply's calls may
have changed, and nothing else; every run still starts by reading everything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler.errors import PermanentError
from reconciler.execute import ExecuteOptions
from reconciler.manifests import LoadOptions, load
from reconciler.plan import PlanOptions, Source
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.reconcile import Request, Result, reconcile
from reconciler.sandbox.pachyderm import Pachd
from reconciler.sandbox.store import Store
from reconciler.state import SqliteStore
from reconciler.state.locks import LockOptions
from tests.pachyderm.helpers import Sandbox
from tests.pachyderm.test_provider import PROJECT, pipeline, write
from tests.pachyderm.test_shared_cluster import CREDS

LISTS = {"ListProject", "ListRepo", "ListPipeline", "ListSecret"}


def applied(folder: Path, sandbox: Sandbox) -> Result:
    """An apply as `serve` runs it: the refresh after it."""
    request = Request(
        "apply",
        PlanOptions(prune=True),
        Source("."),
        execute=ExecuteOptions(backoff_initial=0, backoff_max=0),
        lock=LockOptions(),
        refresh=True,
    )
    store = SqliteStore(folder / "state.db")
    try:
        return asyncio.run(reconcile(load(folder, LoadOptions(env={})), sandbox, store, request))
    finally:
        store.close()


def after_the_apply(sandbox: Sandbox) -> list[str]:
    """The lists read after the last mutating call (the refresh's)."""
    calls = sandbox.recorder.calls
    last = max(i for i, c in enumerate(calls) if c in sandbox.recorder.mutating())
    return sorted(c.method for c in calls[last + 1 :] if c.method in LISTS)


def test_a_changed_repo_is_read_again_alone(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, CREDS, pipeline("edges", ["images"]))
    applied(folder, sandbox)
    write(
        folder,
        PROJECT + "spec: {description: photos}\n",
        CREDS,
        pipeline("edges", ["images"]),
    )
    sandbox.reset()

    result = applied(folder, sandbox)
    assert [c.method for c in sandbox.recorder.mutating()] == ["CreateRepo"]
    assert after_the_apply(sandbox) == ["ListRepo"]
    # What the refresh did not read again is still there, as the plan saw it.
    assert result.refreshed is not None and not result.refreshed.plan.pending
    shown = {s.id.kind: s.sync for s in result.refreshed.statuses()}
    assert shown == {
        "Project": "synced",
        "Repo": "synced",
        "Secret": "synced",
        "Pipeline": "synced",
        "ClusterDefaults": "not_managed",
        "ProjectDefaults": "not_managed",
    }


def test_an_updated_pipeline_is_read_again_with_the_repos_it_makes(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))
    applied(folder, sandbox)
    write(folder, PROJECT, pipeline("edges", ["images"], cmd="again"))
    sandbox.reset()

    result = applied(folder, sandbox)
    assert [c.method for c in sandbox.recorder.mutating()] == ["CreatePipelineV2"]
    assert after_the_apply(sandbox) == ["ListPipeline", "ListRepo"]
    assert result.refreshed is not None and not result.refreshed.plan.pending
    # The output repo is the pipeline's, not a repo nobody manages.
    assert sorted(str(s.id) for s in result.refreshed.statuses() if s.managed) == [
        "pachyderm:Pipeline/vision/edges",
        "pachyderm:Project/vision",
        "pachyderm:Repo/vision/images",
    ]
    assert not [s for s in result.refreshed.statuses() if s.id.kind == "Repo" and not s.managed]


def test_a_deleted_pipeline_takes_its_output_repo_out_of_the_refresh(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))
    applied(folder, sandbox)
    write(folder, PROJECT)
    sandbox.reset()

    result = applied(folder, sandbox)
    assert [c.method for c in sandbox.recorder.mutating()] == ["DeletePipeline"]
    assert result.refreshed is not None
    assert sorted(
        str(s.id) for s in result.refreshed.statuses() if not s.id.kind.endswith("Defaults")
    ) == [
        "pachyderm:Project/vision",
        "pachyderm:Repo/vision/images",
    ]


def test_every_run_reads_everything_first_and_sees_what_changed_by_hand(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, CREDS, pipeline("edges", ["images"]))
    applied(folder, sandbox)
    # Someone edits the project's description with pachctl between two runs.
    store = Store(sandbox.db)
    try:
        Pachd(store).CreateProject(
            {"project": {"name": "vision"}, "description": "by hand", "update": True}
        )
    finally:
        store.close()
    sandbox.reset()

    result = applied(folder, sandbox)
    calls = sandbox.recorder.calls
    first = calls.index(sandbox.recorder.mutating()[0])
    assert sorted(c.method for c in calls[:first] if c.method in LISTS) == sorted(LISTS)
    assert [c.method for c in sandbox.recorder.mutating()] == ["CreateProject"]
    # Put back, and read again after: the refresh says so.
    assert after_the_apply(sandbox) == ["ListProject"]
    assert result.refreshed is not None and not result.refreshed.plan.pending


def test_a_call_that_failed_still_has_its_list_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT)
    applied(folder, sandbox)
    write(folder, PROJECT + "spec: {description: photos}\n")
    sandbox.reset()

    async def refused(*_: object, **__: object) -> None:
        # As if pachd took the change and the answer was lost: unknown, so read again.
        raise PermanentError("connection lost after the request was sent")

    monkeypatch.setattr(PachdClient, "create_repo", refused)
    result = applied(folder, sandbox)
    assert result.outcome is not None and result.outcome.result == "failed"
    assert result.refreshed is not None
    # The plan's three reads (no secret here), then the refresh's: what the call touched.
    listed = [c.method for c in sandbox.recorder.calls if c.method in LISTS]
    assert len(listed) == 4 and listed[-1] == "ListRepo"
