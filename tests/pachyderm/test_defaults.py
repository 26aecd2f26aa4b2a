"""Pipelines on a pachd with cluster and project defaults, as every 2.8+ install has:
applied once, in sync forever; restated defaults, defaults changed without regenerate,
and pachd's own regeneration restart nothing; a change made behind our back shows; a
pipeline that cannot start fails its apply; an unmanaged reader keeps a pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.providers.pachyderm.canonical import canonical
from reconciler.sandbox import SandboxOptions
from reconciler.sandbox.pachyderm import Pachd, PachydermOptions
from reconciler.sandbox.store import Store
from tests.conftest import run_cli
from tests.pachyderm.helpers import Sandbox
from tests.pachyderm.test_provider import CONFIG, PROJECT, chain, pipeline, write

PROJECT_DEFAULTS = json.dumps(
    {"createPipelineRequest": {"datumTries": "5", "resourceLimits": {"memory": "2Gi"}}}
)


def pachd(sandbox: Sandbox, call: str, body: dict[str, Any]) -> Any:
    """A call made on the platform behind reconciler's back (pachctl, an admin)."""
    store = Store(sandbox.db)
    try:
        platform = Pachd(store)
        with store.transaction():
            return getattr(platform, call)(body)
    finally:
        store.close()


def applied_chain(tmp_path: Path) -> tuple[Sandbox, Path]:
    """The three-pipeline chain applied to a sandbox with 2.8's cluster defaults."""
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = chain(tmp_path / "m")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    return sandbox, folder


def converged(folder: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.reset()
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    assert "No changes" in capsys.readouterr().out
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    stats = sandbox.stats()
    assert stats["mutating"] == 0 and stats["restarts"] == {}, stats


@pytest.mark.parametrize(
    "cluster", [PachydermOptions().cluster_defaults, None], ids=["2.8 defaults", "none"]
)
@pytest.mark.parametrize("project_defaults", [False, True], ids=["", "project defaults"])
def test_a_pipeline_applied_once_stays_in_sync_whatever_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster: str | None, project_defaults: bool
) -> None:
    sandbox = Sandbox(
        tmp_path / "sandbox.db",
        SandboxOptions(pachyderm=PachydermOptions(cluster_defaults=cluster)),
    )
    folder = chain(tmp_path / "m")
    if project_defaults:
        assert run_cli("apply", str(folder), "--yes", "--select", "Project", connector=sandbox) == 0
        pachd(
            sandbox,
            "SetProjectDefaults",
            {"project": {"name": "vision"}, "projectDefaultsJson": PROJECT_DEFAULTS},
        )
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    (info, *_) = pachd(sandbox, "ListPipeline", {})
    effective = json.loads(info["effectiveSpecJson"])
    if cluster is not None:
        assert effective["resourceRequests"] == {"cpu": 1, "memory": "256Mi", "disk": "1Gi"}
    if project_defaults:
        assert effective["datumTries"] == "5"
    converged(folder, sandbox, capsys)
    converged(folder, sandbox, capsys)


def test_restating_a_default_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, folder = applied_chain(tmp_path)
    text = (folder / "manifests.yaml").read_text()
    restated = (
        "  datumTries: 3\n  outputBranch: master\n"
        "  resourceRequests: {cpu: 1, memory: 256Mi, disk: 1Gi}\n"
    )
    (folder / "manifests.yaml").write_text(
        text.replace(
            "  input: {pfs: {repo: images, glob: /*}}\n",
            "  input: {pfs: {repo: images, glob: /*}}\n" + restated,
            1,
        )
    )
    assert restated in (folder / "manifests.yaml").read_text()
    converged(folder, sandbox, capsys)


def test_defaults_changed_without_regenerate_restart_nothing_and_a_manual_change_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, folder = applied_chain(tmp_path)
    new = {"createPipelineRequest": {"resourceRequests": {"cpu": 2}, "datumTries": 7}}
    answer = pachd(sandbox, "SetClusterDefaults", {"clusterDefaultsJson": json.dumps(new)})
    assert answer == {"affectedPipelines": []}  # without regenerate, nothing moves now
    converged(folder, sandbox, capsys)
    # pachd regenerating them restarts them itself; our next run adds nothing.
    answer = pachd(
        sandbox,
        "SetClusterDefaults",
        {"clusterDefaultsJson": json.dumps({"createPipelineRequest": {}}), "regenerate": True},
    )
    assert len(answer["affectedPipelines"]) == 3
    converged(folder, sandbox, capsys)
    # A change made behind reconciler's back (pachctl update pipeline) is drift.
    (edges,) = [p for p in pachd(sandbox, "ListPipeline", {}) if p["pipeline"]["name"] == "edges"]
    user = json.loads(edges["userSpecJson"])
    user["transform"]["image"] = "alpine:3.21"
    pachd(
        sandbox, "CreatePipelineV2", {"createPipelineRequestJson": json.dumps(user), "update": True}
    )
    capsys.readouterr()
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 2
    out = capsys.readouterr().out
    assert "pachyderm:Pipeline/vision/edges" in out and "alpine:3.21" in out


def test_proto_names_int64_strings_and_no_transform_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    snake = pipeline(
        "edges", ["images"], extra="  datum_tries: '4'\n  parallelism_spec: {constant: '2'}\n"
    )
    bare = (
        "apiVersion: pachyderm/v1\nkind: Pipeline\nmetadata: {name: bare, project: vision}\n"
        "spec:\n  input: {pfs: {repo: images, glob: /*}}\n"
    )
    folder = write(
        tmp_path / "m",
        chain(tmp_path / "c")
        .joinpath("manifests.yaml")
        .read_text()
        .split("\n---\napiVersion: pachyderm/v1\nkind: Pipeline")[0],
        snake,
        bare,
    )
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0, capsys.readouterr()
    converged(folder, sandbox, capsys)


def test_an_empty_message_is_not_an_absent_one() -> None:
    assert canonical({"spout": {}}) == {"spout": {}}
    assert canonical({"spout": {}}) != canonical({})
    assert canonical({"transform": {"env": {}}}) == {"transform": {}}


def test_a_pipeline_that_cannot_start_fails_its_apply_with_pachds_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = SandboxOptions(pachyderm=PachydermOptions(crash_images=frozenset({"alpine:3.20"})))
    sandbox = Sandbox(tmp_path / "sandbox.db", options)
    folder = chain(tmp_path / "m")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 1
    out = capsys.readouterr().out
    assert "is PIPELINE_CRASHING: back-off pulling image" in out
    assert "skipped" in out  # what reads it waits for a pipeline that runs
    assert run_cli("plan", str(folder), connector=sandbox) in (0, 1)
    out = capsys.readouterr().out
    assert "is not healthy on the target: PIPELINE_CRASHING" in out
    # It was made, by us: ours, as created, not a stranger's to adopt.
    assert "adopt" not in out, out


def with_unmanaged_reader(tmp_path: Path, reads: str) -> tuple[Sandbox, Path]:
    """The chain applied, and pipeline vision/audit, made with pachctl, reading `reads`."""
    sandbox, folder = applied_chain(tmp_path)
    reader = {
        "pipeline": {"name": "audit", "project": {"name": "vision"}},
        "transform": {"image": "alpine", "cmd": ["ls"]},
        "input": {"pfs": {"repo": reads, "glob": "/"}},
    }
    pachd(sandbox, "CreatePipelineV2", {"createPipelineRequestJson": json.dumps(reader)})
    return sandbox, folder


def test_a_pipeline_an_unmanaged_pipeline_reads_is_not_pruned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, folder = with_unmanaged_reader(tmp_path, "summary")
    text = (folder / "manifests.yaml").read_text()
    (folder / "manifests.yaml").write_text(
        text.split("\n---\n" + pipeline("summary", ["montage"]))[0]
    )
    sandbox.reset()
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) == 1
    assert (
        "pachyderm:Pipeline/vision/audit, which reconciler does not manage"
        in capsys.readouterr().out
    )
    assert sandbox.stats()["mutating"] == 0


# --- secrets as pachd has them -----------------------------------------------------------


def mounting(secret: str, extra: str = "") -> str:
    return (
        "apiVersion: pachyderm/v1\nkind: Pipeline\nmetadata: {name: edges, project: vision}\n"
        "spec:\n  transform:\n    image: alpine:3.20\n    cmd: [run]\n"
        f"    secrets: [{{name: {secret}, envVar: TOKEN, key: token}}]\n{extra}"
        "  input: {pfs: {repo: images, glob: /*}}\n"
    )


def test_a_secret_made_out_of_band_may_be_used_and_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = SandboxOptions(pachyderm=PachydermOptions(kube_secrets={"helm-creds": ("token",)}))
    sandbox = Sandbox(tmp_path / "sandbox.db", options)
    project = chain(tmp_path / "c").joinpath("manifests.yaml").read_text().split("\n---\n")
    folder = write(tmp_path / "m", "\n---\n".join(project[:2]), mounting("helm-creds"))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    out = capsys.readouterr().out
    assert "exists on the cluster but is not managed here" in out
    converged(folder, sandbox, capsys)
    # A Secret manifest over it: refused before any call, never AlreadyExists at apply.
    declared = (
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: helm-creds}\n"
        "spec: {data: {token: x}}\n"
    )
    folder = write(tmp_path / "m", "\n---\n".join(project[:2]), mounting("helm-creds"), declared)
    sandbox.reset()
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 1
    assert "was made outside pachd" in capsys.readouterr().out
    assert sandbox.stats()["mutating"] == 0


def test_only_mounted_secrets_must_exist_and_keys_must_be_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    project = chain(tmp_path / "c").joinpath("manifests.yaml").read_text().split("\n---\n")
    base = "\n---\n".join(project[:2])
    pulling = mounting("creds", extra="    imagePullSecrets: [registry]\n").replace(
        "    secrets: [{name: creds, envVar: TOKEN, key: token}]\n", ""
    )
    assert run_cli("plan", str(write(tmp_path / "a", base, pulling)), connector=sandbox) == 0
    assert "uses Kubernetes secret 'registry' (image pull or egress)" in capsys.readouterr().out
    assert (
        run_cli("plan", str(write(tmp_path / "b", base, mounting("ghost"))), connector=sandbox) == 1
    )
    assert "pachd would refuse the pipeline (missing Kubernetes secret)" in capsys.readouterr().out
    wrong_key = (
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: creds}\n"
        "spec: {data: {password: x}}\n"
    )
    folder = write(tmp_path / "c2", base, mounting("creds"), wrong_key)
    assert run_cli("plan", str(folder), connector=sandbox) == 1
    assert "reads key 'token' of secret 'creds', which its manifest does not hold" in (
        capsys.readouterr().out
    )


# --- defaults as kinds ------------------------------------------------------------------


def cluster_defaults(cpu: int, *, regenerate: bool) -> str:
    return (
        "apiVersion: pachyderm/v1\nkind: ClusterDefaults\nmetadata: {name: cluster}\n"
        "spec:\n  createPipelineRequest:\n"
        f"    resourceRequests: {{cpu: {cpu}, memory: 256Mi, disk: 1Gi}}\n"
        f"    sidecarResourceRequests: {{cpu: 1, memory: 256Mi, disk: 1Gi}}\n"
        f"  regenerate: {str(regenerate).lower()}\n"
    )


@pytest.mark.parametrize("regenerate", [True, False], ids=["regenerate", "not now"])
def test_a_defaults_change_says_which_pipelines_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], regenerate: bool
) -> None:
    sandbox, folder = with_unmanaged_reader(tmp_path, "images")
    text = (folder / "manifests.yaml").read_text()
    (folder / "manifests.yaml").write_text(
        text + "\n---\n" + cluster_defaults(2, regenerate=regenerate)
    )
    sandbox.reset()
    capsys.readouterr()
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 2
    out = capsys.readouterr().out
    assert sandbox.stats()["mutating"] == 0  # pachd's dryRun answered, nothing moved
    if regenerate:
        assert "regenerate: pachd restarts 4 pipeline(s)" in out
    else:
        assert "no restart now (regenerate: false); 4 pipeline(s) take the new defaults" in out
    assert "vision/audit (unmanaged)" in out and "vision/edges," in out
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    restarts = sandbox.stats()["restarts"]
    assert len(restarts) == (4 if regenerate else 0), restarts
    (edges,) = [p for p in pachd(sandbox, "ListPipeline", {}) if p["pipeline"]["name"] == "edges"]
    cpu = json.loads(edges["effectiveSpecJson"])["resourceRequests"]["cpu"]
    assert cpu == (2 if regenerate else 1)
    converged(folder, sandbox, capsys)


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (cluster_defaults(2, regenerate=False).replace("name: cluster", "name: prod"), "cluster"),
        (cluster_defaults(2, regenerate=False) + "  reprocess: true\n", "reprocess needs"),
        (
            "apiVersion: pachyderm/v1\nkind: ProjectDefaults\nmetadata: {name: default}\n"
            "spec: {createPipelineRequest: {stopped: true}}\n",
            "reconciler's own pipeline field",
        ),
        (
            "apiVersion: pachyderm/v1\nkind: ProjectDefaults\nmetadata: {name: nowhere}\n"
            "spec: {createPipelineRequest: {datumTries: 2}}\n",
            "a ProjectDefaults is named after its project",
        ),
    ],
)
def test_defaults_manifests_pachd_would_refuse_are_input_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, why: str
) -> None:
    folder = write(tmp_path / "m", document)
    assert run_cli("validate", str(folder)) == 3
    assert why in capsys.readouterr().err


def test_status_shows_each_resources_sync_and_health(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = SandboxOptions(pachyderm=PachydermOptions(crash_images=frozenset({"bad:1"})))
    sandbox = Sandbox(tmp_path / "sandbox.db", options)
    folder = chain(tmp_path / "m")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    capsys.readouterr()
    assert run_cli("status", str(folder), "--format", "json", connector=sandbox) == 0
    shown = json.loads(capsys.readouterr().out)["targets"]["pachyderm"]
    pipelines = {r["id"]: r for r in shown["resources"] if r["kind"] == "Pipeline"}
    assert {rid: r["platform_status"] for rid, r in pipelines.items()} == {
        f"pachyderm:Pipeline/vision/{name}": "PIPELINE_RUNNING"
        for name in ("edges", "montage", "summary")
    }
    assert {r["health"] for r in shown["resources"]} == {"healthy"}
    managed = [r for r in shown["resources"] if r["managed"]]
    assert shown["sync"] == {"synced": len(managed)}
    # pachd's cluster and project defaults are there, in no manifest: shown, not managed
    assert {r["sync"] for r in shown["resources"] if not r["managed"]} <= {"not_managed"}
    (edges,) = [p for p in pachd(sandbox, "ListPipeline", {}) if p["pipeline"]["name"] == "edges"]
    user = json.loads(edges["userSpecJson"])
    user["transform"]["image"] = "bad:1"
    pachd(
        sandbox, "CreatePipelineV2", {"createPipelineRequestJson": json.dumps(user), "update": True}
    )
    time.sleep(0.1)  # past the sandbox's start delay
    assert run_cli("status", str(folder), connector=sandbox) == 0
    out = capsys.readouterr().out
    assert "health: 1 degraded, " in out
    assert "sync: 1 out of sync, " in out  # its image, changed by hand, differs
    assert "degraded    pachyderm:Pipeline/vision/edges: back-off pulling image" in out


def test_only_the_projects_a_source_names_or_owns_have_their_defaults_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a cluster shared by many sources, a run reads the defaults of the projects its
    manifests name and of those it owns, not every team's (one read each per run); an
    owned ProjectDefaults whose manifest is gone is still pruned, by emptying it."""
    sandbox = Sandbox(tmp_path / "sandbox.db")
    for name in ("legacy", "team0", "team1", "team2", "team3"):  # made by others
        pachd(sandbox, "CreateProject", {"project": {"name": name}})
    project_defaults = (
        "apiVersion: pachyderm/v1\nkind: ProjectDefaults\nmetadata: {name: legacy}\n"
        "spec: {createPipelineRequest: {datumTries: 2}}\n"
    )
    legacy = (
        "apiVersion: pachyderm/v1\nkind: Project\n"
        "metadata: {name: legacy, deletionPolicy: Orphan}\n"
    )
    folder = write(tmp_path / "m", PROJECT, legacy, project_defaults)
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    assert sandbox.stats()["calls"]["POST /api/pps_v2.API/GetProjectDefaults"] == 2

    # Both leave the manifests: the project is orphaned, and pruning empties its
    # defaults, though no manifest names the project any more (they are owned).
    write(tmp_path / "m", PROJECT, config=CONFIG + "prune: true\n")
    capsys.readouterr()
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    answer = pachd(sandbox, "GetProjectDefaults", {"project": {"name": "legacy"}})
    assert json.loads(answer.get("projectDefaultsJson") or "{}") == {}


def test_a_source_without_pipelines_or_defaults_does_not_read_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defaults shape pipelines alone: a source of projects and repos makes no defaults
    read (and shows none as not managed); once it has a pipeline, or still owns one that
    left its manifests, they are read again."""
    sandbox = Sandbox(tmp_path / "sandbox.db")
    reads = ("POST /api/pps_v2.API/GetClusterDefaults", "POST /api/pps_v2.API/GetProjectDefaults")
    folder = write(tmp_path / "m", PROJECT)
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert not {call for call in sandbox.stats()["calls"] if call in reads}
    capsys.readouterr()
    assert run_cli("status", str(folder), "--format", "json", connector=sandbox) == 0
    shown = json.loads(capsys.readouterr().out)["targets"]["pachyderm"]["resources"]
    assert {r["kind"] for r in shown} == {"Project", "Repo"}

    write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    calls = sandbox.stats()["calls"]
    assert calls[reads[0]] == 1 and calls[reads[1]] == 1

    # The pipeline leaves the manifests without pruning: still owned, so still read (its
    # comparison needs them the day it comes back).
    write(tmp_path / "m", PROJECT)
    sandbox.reset()
    assert run_cli("plan", str(folder), connector=sandbox) == 0
    assert sandbox.stats()["calls"][reads[0]] == 1
