"""Many sources on one pachd: each observes, reports and prunes its own projects, and
still sees whatever elsewhere uses what it owns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from reconciler.providers.http import HttpClient, asgi_transport
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.sandbox.pachyderm import Pachd
from reconciler.sandbox.store import Store
from reconciler.state import SqliteStore
from tests.conftest import run_cli
from tests.pachyderm.helpers import Sandbox
from tests.pachyderm.test_provider import PROJECT, write
from tests.test_resource_status import shown

AUDIO = (
    "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: audio}\n---\n"
    "apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {name: clips, project: audio}\n"
)


CREDS = (
    "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: creds}\n"
    "spec: {data: {token: dG9rZW4=}}\n"
)


def by_hand(
    sandbox: Sandbox, pipeline: str, project: str, reads: str, mounts: str | None = None
) -> None:
    """A pipeline made with pachctl, reading `reads` (project/repo), mounting the
    secret `mounts`."""
    source_project, repo = reads.split("/")
    transform: dict[str, object] = {"image": "alpine:3.20", "cmd": ["run"]}
    if mounts is not None:
        transform["secrets"] = [{"name": mounts, "mountPath": "/creds"}]
    spec = {
        "pipeline": {"name": pipeline, "project": {"name": project}},
        "transform": transform,
        "input": {"pfs": {"project": source_project, "repo": repo, "glob": "/*"}},
    }
    store = Store(sandbox.db)
    try:
        Pachd(store).CreatePipelineV2({"createPipelineRequestJson": json.dumps(spec)})
    finally:
        store.close()


def two_sources(tmp_path: Path) -> tuple[Sandbox, Path, Path]:
    """One sandbox; the vision team's source and the audio team's, each applied."""
    sandbox = Sandbox(tmp_path / "sandbox.db")
    vision = write(tmp_path / "vision", PROJECT)
    audio = write(tmp_path / "audio", AUDIO)
    for folder in (vision, audio):
        assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    return sandbox, vision, audio


def test_a_source_lists_and_reports_only_its_own_projects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, vision, audio = two_sources(tmp_path)
    sandbox.reset()

    found = shown(vision, sandbox, capsys)
    assert sorted(k for k in found if not k.startswith("_")) == [
        "pachyderm:Project/vision",
        "pachyderm:Repo/vision/images",
    ]
    # pachd is asked for this source's repos alone (pfs.proto ListRepoRequest.projects).
    listed = [c.body for c in sandbox.recorder.calls if c.method == "ListRepo"]
    assert listed and all(body["projects"] == [{"name": "vision"}] for body in listed)
    # The other source sees its own, and nothing of this one.
    assert "pachyderm:Repo/audio/clips" in shown(audio, sandbox, capsys)
    assert "pachyderm:Repo/vision/images" not in shown(audio, sandbox, capsys)


def test_what_another_project_reads_of_ours_is_shown_and_never_pruned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, vision, _ = two_sources(tmp_path)
    # The audio team reads vision's images from a pipeline of its own project; another
    # of their pipelines reads only their clips.
    by_hand(sandbox, "thumbs", "audio", "vision/images")
    by_hand(sandbox, "waves", "audio", "audio/clips")

    found = shown(vision, sandbox, capsys)
    reader = found["pachyderm:Pipeline/audio/thumbs"]
    assert (reader["sync"], reader["managed"]) == ("not_managed", False)
    assert found["pachyderm:Repo/vision/images"]["used_by"] == ["pachyderm:Pipeline/audio/thumbs"]
    assert "pachyderm:Pipeline/audio/waves" not in found

    # vision drops its repo: the reader elsewhere keeps it from being deleted.
    write(vision, PROJECT.split("---")[0])
    sandbox.reset()
    capsys.readouterr()
    assert run_cli("apply", str(vision), "--yes", "--prune", connector=sandbox) != 0
    assert "Pipeline/audio/thumbs, which reconciler does not manage" in capsys.readouterr().out
    assert sandbox.recorder.mutating() == []


def test_a_project_that_left_the_manifests_is_still_observed_and_pruned(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, AUDIO)
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    # audio is named by the inventory alone now: still listed, so deleted, not forgotten.
    write(folder, PROJECT)
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) == 0
    deleted = [(c.method, c.body) for c in sandbox.recorder.mutating()]
    assert [method for method, _ in deleted] == ["DeleteRepo", "DeleteProject"]
    listed = [c.body for c in sandbox.recorder.calls if c.method == "ListRepo"]
    assert {p["name"] for p in listed[0]["projects"]} == {"vision", "audio"}


def test_a_source_with_nothing_in_any_project_lists_no_repo(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    assert run_cli("apply", str(write(tmp_path / "audio", AUDIO)), "--yes", connector=sandbox) == 0
    folder = write(tmp_path / "m", CREDS)
    sandbox.reset()
    assert run_cli("plan", str(folder), connector=sandbox) == 0
    # An empty filter would list every project's repos: no ListRepo at all.
    assert "ListRepo" not in [c.method for c in sandbox.recorder.calls]


def test_a_source_that_names_uses_and_owns_no_secret_neither_reads_nor_shows_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    vision = write(tmp_path / "vision", PROJECT)
    audio = write(tmp_path / "audio", AUDIO, CREDS)
    for folder in (vision, audio):
        assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    # The audio team's pipeline mounts their secret and reads their clips.
    by_hand(sandbox, "waves", "audio", "audio/clips", mounts="creds")
    sandbox.reset()

    found = shown(vision, sandbox, capsys)
    assert "pachyderm:Secret/creds" not in found
    assert "pachyderm:Pipeline/audio/waves" not in found
    assert "ListSecret" not in [c.method for c in sandbox.recorder.calls]
    # The team that manages it still sees it, and what mounts it.
    assert shown(audio, sandbox, capsys)["pachyderm:Secret/creds"]["used_by"] == [
        "pachyderm:Pipeline/audio/waves"
    ]


def test_an_owned_secret_that_left_the_manifests_is_still_read_and_guarded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, CREDS)
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert run_cli("apply", str(write(tmp_path / "audio", AUDIO)), "--yes", connector=sandbox) == 0
    # Another team's pipeline, in their project, mounts the secret this source made.
    by_hand(sandbox, "waves", "audio", "audio/clips", mounts="creds")

    # The secret leaves the manifests: the inventory alone names it, so it is still
    # read, and its user elsewhere keeps it from being deleted.
    write(folder, PROJECT)
    sandbox.reset()
    capsys.readouterr()
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) != 0
    assert "Pipeline/audio/waves, which reconciler does not manage" in capsys.readouterr().out
    assert sandbox.recorder.mutating() == []
    assert "ListSecret" in [c.method for c in sandbox.recorder.calls]


def test_what_a_killed_run_created_elsewhere_is_still_found_and_owned(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, AUDIO)
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    # As if a run had been killed after creating audio/clips, before recording it; the
    # manifests have since lost the audio project, which nothing else names any more.
    store = SqliteStore(folder / "state.db")
    try:
        clips = store.inventory()["pachyderm:Repo/audio/clips"]
        store.forget("pachyderm:Repo/audio/clips")
        store.forget("pachyderm:Project/audio")
        run = store.begin_run("apply", revision=None, profile=None, plan=None)
        store.open_intent(run, clips.id, "create", "create", clips)
    finally:
        store.close()
    write(folder, PROJECT)
    sandbox.reset()
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) == 0
    # Looked for where it was made, found, owned again: so pruned, not left unowned.
    assert [(c.method, c.body["repo"]["name"]) for c in sandbox.recorder.mutating()] == [
        ("DeleteRepo", "clips")
    ]
    store = SqliteStore(folder / "state.db")
    try:
        assert store.pending_intents() == []
        assert sorted(store.inventory()) == [
            "pachyderm:Project/vision",
            "pachyderm:Repo/vision/images",
        ]
    finally:
        store.close()


def test_only_names_a_project_can_have_reach_pachds_repo_filter(tmp_path: Path) -> None:
    # pachd puts the filter's names into its SQL as they are (pfsdb/repos.go): a name
    # from a tampered state or a broken caller must never get there.
    sandbox = Sandbox(tmp_path / "sandbox.db")
    client = PachdClient(
        HttpClient("http://sandbox", platform="pachd", transport=asgi_transport(sandbox.recorder))
    )

    async def listed(projects: list[str]) -> None:
        await client.list_repos(projects)
        await client.http.aclose()

    asyncio.run(listed(["vision", "x') OR ('1'='1", "a" * 52]))
    (call,) = sandbox.recorder.calls
    assert call.body["projects"] == [{"name": "vision"}]
    sandbox.recorder.clear()
    asyncio.run(listed(["'; DROP TABLE pfs.repos; --"]))
    assert sandbox.recorder.calls == []
