"""Sync and health per resource, as `reconciler status --format json` shows them: each of
the four sync states and what the plan would do, on the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox.pachyderm import Pachd
from reconciler.sandbox.store import Store
from tests.conftest import run_cli
from tests.pachyderm.helpers import Sandbox
from tests.pachyderm.test_provider import PROJECT, pipeline, write


def shown(folder: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    run_cli("status", str(folder), "--format", "json", connector=sandbox)
    target = json.loads(capsys.readouterr().out)["targets"]["pachyderm"]
    return {r["id"]: r for r in target["resources"]} | {"_sync": target["sync"]}


def test_each_sync_state_with_its_planned_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]), pipeline("b", ["edges"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0

    # Someone makes a repo by hand; the manifests gain a pipeline and lose another.
    store = Store(sandbox.db)
    try:
        Pachd(store).CreateRepo({"repo": {"name": "scratch", "project": {"name": "vision"}}})
    finally:
        store.close()
    write(
        folder,
        PROJECT,
        pipeline("edges", ["images"], extra="  description: sharper\n"),
        pipeline("c", ["edges"]),
    )
    found = shown(folder, sandbox, capsys)
    edges = found["pachyderm:Pipeline/vision/edges"]
    assert (edges["sync"], edges["action"], edges["restarts"]) == (
        "out_of_sync",
        "patch",
        "restarts it",
    )
    assert [c["path"] for c in edges["changes"]] == ["spec.description"]
    # Used by the new pipeline (manifests) and by the old one, still running (platform).
    assert edges["used_by"] == ["pachyderm:Pipeline/vision/b", "pachyderm:Pipeline/vision/c"]
    new = found["pachyderm:Pipeline/vision/c"]
    assert (new["sync"], new["action"], new["health"]) == ("missing", "create", "unknown")
    gone = found["pachyderm:Pipeline/vision/b"]
    assert (gone["sync"], gone["action"], gone["managed"]) == ("out_of_sync", None, True)
    assert gone["reasons"] == ["owned by reconciler and no longer in the manifests; not pruned"]
    stray = found["pachyderm:Repo/vision/scratch"]
    assert (stray["sync"], stray["managed"]) == ("not_managed", False)
    assert found["pachyderm:Repo/vision/images"]["sync"] == "synced"
    assert found["pachyderm:Repo/vision/images"]["health"] == "healthy"
    # Counted over what is managed: the stray repo is not.
    assert found["_sync"] == {"missing": 1, "out_of_sync": 2, "synced": 2}
