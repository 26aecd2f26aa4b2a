"""The Pachyderm provider against the sandbox: what a user sees happen to pachd."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.diff import equal
from reconciler.errors import PermanentError, RetryableError
from reconciler.manifests import LoadOptions, ResourceId, load
from reconciler.providers.base import Observed
from reconciler.providers.http import Transport, asgi_transport
from reconciler.providers.pachyderm.connection import connect
from reconciler.providers.pachyderm.policies import RULES
from reconciler.providers.pachyderm.provider import PachydermProvider
from reconciler.providers.pachyderm.target import PachydermTarget
from reconciler.sandbox import SandboxOptions, create_app
from tests.conftest import run_cli
from tests.pachyderm.helpers import Recorder, Sandbox, connecting, observe_failures, served

CONFIG = "state: sqlite:///state.db\ntargets:\n  pachyderm: {provider: pachyderm, url: embedded}\n"


def pipeline(name: str, inputs: list[str], *, cmd: str = "run", extra: str = "") -> str:
    cross = ", ".join(f"{{pfs: {{repo: {repo}, glob: /*}}}}" for repo in inputs)
    source = (
        f"{{cross: [{cross}]}}" if len(inputs) > 1 else f"{{pfs: {{repo: {inputs[0]}, glob: /*}}}}"
    )
    return (
        "apiVersion: pachyderm/v1\nkind: Pipeline\n"
        f"metadata: {{name: {name}, project: vision}}\n"
        f"spec:\n  transform: {{image: 'alpine:3.20', cmd: [{cmd}]}}\n  input: {source}\n{extra}"
    )


PROJECT = (
    "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: vision}\n"
    "spec: {description: quickstart}\n---\n"
    "apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {name: images, project: vision}\n"
)


def write(folder: Path, *documents: str, config: str = CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reconciler.yaml").write_text(config)
    (folder / "manifests.yaml").write_text("\n---\n".join(documents))
    return folder


def chain(folder: Path, montage_cmd: str = "run") -> Path:
    return write(
        folder,
        PROJECT,
        pipeline("edges", ["images"]),
        pipeline("montage", ["edges", "images"], cmd=montage_cmd),
        pipeline("summary", ["montage"]),
    )


def names(calls: list[Any], method: str) -> list[str]:
    found = []
    for call in calls:
        if call.method != method:
            continue
        if method == "CreatePipelineV2":
            found.append(json.loads(call.body["createPipelineRequestJson"])["pipeline"]["name"])
        else:
            body = call.body
            found.append((body.get("pipeline") or body.get("repo") or body.get("project"))["name"])
    return found


def test_a_chain_is_created_upstream_first_and_a_middle_change_restarts_that_alone(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = chain(tmp_path / "m")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert names(sandbox.recorder.calls, "CreatePipelineV2") == ["edges", "montage", "summary"]
    sandbox.reset()

    chain(folder, montage_cmd="render")
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 2
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert names(sandbox.recorder.mutating(), "CreatePipelineV2") == ["montage"]
    assert [c.method for c in sandbox.recorder.mutating()] == ["CreatePipelineV2"]
    assert sandbox.stats()["restarts"] == {"pachyderm:Pipeline/vision/montage": 1}


def test_pruning_deletes_downstream_first_and_repos_after_their_readers(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = chain(tmp_path / "m")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    write(folder, "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: keep}\n")
    assert (
        run_cli("apply", str(folder), "--yes", "--prune", "--allow-mass-delete", connector=sandbox)
        == 0
    )
    deleted = [
        (c.method, names([c], c.method)[0])
        for c in sandbox.recorder.mutating()
        if c.method.startswith("Delete")
    ]
    assert deleted == [
        ("DeletePipeline", "summary"),
        ("DeletePipeline", "montage"),
        ("DeletePipeline", "edges"),
        ("DeleteRepo", "images"),
        ("DeleteProject", "vision"),
    ]


def test_stopped_is_a_stop_call_and_never_a_restart(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    write(folder, PROJECT, pipeline("edges", ["images"], extra="  stopped: true\n"))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert [c.method for c in sandbox.recorder.mutating()] == ["StopPipeline"]
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    write(folder, PROJECT, pipeline("edges", ["images"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert [c.method for c in sandbox.recorder.mutating()] == ["StopPipeline", "StartPipeline"]
    assert sandbox.stats()["restarts"] == {}


def test_reprocess_on_update_is_sent_with_the_update_and_is_not_a_change_itself(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    write(folder, PROJECT, pipeline("edges", ["images"], extra="  reprocessOnUpdate: true\n"))
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    sandbox.reset()
    write(
        folder,
        PROJECT,
        pipeline("edges", ["images"], cmd="again", extra="  reprocessOnUpdate: true\n"),
    )
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    (update,) = sandbox.recorder.mutating()
    assert update.body["update"] is True and update.body["reprocess"] is True
    sent = json.loads(update.body["createPipelineRequestJson"])
    assert "reprocessOnUpdate" not in sent and "stopped" not in sent


SECRET = (
    "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: creds}\n"
    "spec:\n  data: {token: '${env:TOKEN}'}\n"
)
MOUNTS = (
    "  transform: {image: 'alpine:3.20', cmd: [run],"
    " secrets: [{name: creds, envVar: T, key: token}]}\n"
)


def mounting(name: str) -> str:
    return (
        "apiVersion: pachyderm/v1\nkind: Pipeline\n"
        f"metadata: {{name: {name}, project: vision}}\n"
        f"spec:\n{MOUNTS}  input: {{pfs: {{repo: images, glob: /*}}}}\n"
    )


def test_a_changed_secret_is_recreated_and_restarts_the_pipelines_that_mount_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(
        tmp_path / "m", PROJECT, SECRET, mounting("edges"), pipeline("other", ["images"])
    )
    monkeypatch.setenv("TOKEN", "first-value")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0
    sandbox.reset()
    capsys.readouterr()

    monkeypatch.setenv("TOKEN", "second-value")
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    methods = [c.method for c in sandbox.recorder.mutating()]
    assert methods == ["DeleteSecret", "CreateSecret", "CreatePipelineV2"]
    assert sandbox.stats()["restarts"] == {"pachyderm:Pipeline/vision/edges": 1}
    output = capsys.readouterr()
    assert "second-value" not in output.out + output.err
    assert "restart" in output.out or "bounce" in output.out


def test_a_pipeline_mounting_a_secret_nobody_defines_fails_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, mounting("edges"))
    assert run_cli("plan", str(folder), connector=sandbox) == 1
    assert "neither in the manifests nor on target 'pachyderm'" in capsys.readouterr().out
    assert sandbox.stats()["mutating"] == 0


def test_a_repo_pachd_does_not_delete_is_an_error_never_a_success(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = create_app(tmp_path / "sandbox.db")
        provider = connect(
            connecting(
                "pachyderm",
                PachydermTarget(provider="pachyderm"),
                transport=asgi_transport(app),
                base_url="http://sb",
            )
        )
        rid = ResourceId("pachyderm", "Repo", "default/ghost")
        try:
            await provider.delete(rid, Observed(rid, {}), None)
        finally:
            await provider.aclose()

    with pytest.raises(PermanentError, match="answered deleted: false"):
        asyncio.run(scenario())


def test_a_snake_case_effective_spec_with_int64_strings_equals_the_manifest(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "m",
        PROJECT,
        pipeline(
            "edges",
            ["images"],
            extra="  parallelismSpec: {constant: 2}\n  datumTries: 5\n"
            "  resourceRequests: {cpu: 0.5, memory: 1G}\n",
        ),
    )
    manifests = load(folder, LoadOptions(env={}))
    provider = connect(connecting("pachyderm", PachydermTarget(provider="pachyderm")))
    (resource,) = [r for r in manifests.resources if r.kind == "Pipeline"]
    desired = provider.desire(resource)
    effective = {
        "pipeline": {"name": "edges", "project": {"name": "vision"}},
        "transform": {"image": "alpine:3.20", "cmd": ["run"], "env": {}, "debug": False},
        "parallelism_spec": {"constant": "2"},
        "datum_tries": "5",
        "resource_requests": {"cpu": 0.5, "memory": "1G", "disk": ""},
        "input": {
            "pfs": {
                "repo": "images",
                "glob": "/*",
                "branch": "master",
                "name": "images",
                "repo_type": "user",
                "project": "vision",
                "lazy": False,
            }
        },
        "output_branch": "master",
        "reprocess_spec": "until_success",
        "s3_out": False,
        "salt": "",
    }
    observed = provider._pipeline(
        {"pipeline": effective["pipeline"], "effectiveSpecJson": json.dumps(effective)}
    )
    assert equal(desired.spec, observed.spec, RULES["Pipeline"].diff)
    asyncio.run(provider.aclose())


def test_over_real_http_with_a_token_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(create_app(tmp_path / "sandbox.db"))
    monkeypatch.setenv("PACHYDERM_TOKEN", "token-123")
    with served(recorder) as url:
        config = (
            "state: sqlite:///state.db\ntargets:\n"
            f"  pachyderm: {{provider: pachyderm, url: '{url}',"
            " auth: {token: '${env:PACHYDERM_TOKEN}'}}\n"
        )
        folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]), config=config)
        assert run_cli("apply", str(folder), "--yes") == 0
        assert run_cli("plan", str(folder), "--detailed-exitcode") == 0
    assert recorder.calls and all(
        c.headers.get("authn-token") == "token-123" for c in recorder.calls
    )
    assert names(recorder.calls, "CreatePipelineV2") == ["edges"]


def test_a_missing_token_variable_is_an_input_error_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PACHYDERM_TOKEN", raising=False)
    config = (
        "targets:\n  pachyderm: {provider: pachyderm, url: 'http://127.0.0.1:9',"
        " auth: {token: '${env:PACHYDERM_TOKEN}'}}\n"
    )
    folder = write(tmp_path / "m", PROJECT, config=config)
    assert run_cli("plan", str(folder)) == 3
    err = capsys.readouterr().err
    assert "PACHYDERM_TOKEN" in err and "export PACHYDERM_TOKEN" in err


def test_an_unreachable_pachd_is_an_operational_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = (
        "targets:\n  pachyderm:"
        " {provider: pachyderm, url: 'http://127.0.0.1:9', timeout: 2, retries: 0}\n"
    )
    folder = write(tmp_path / "m", PROJECT, config=config)
    assert run_cli("plan", str(folder)) == 1
    err = capsys.readouterr().err
    assert "cannot observe target 'pachyderm'" in err and "nothing was changed" in err


@pytest.mark.parametrize("over_http", [True, False], ids=["uvicorn", "in-process"])
def test_injected_faults_and_resets_are_retryable(tmp_path: Path, over_http: bool) -> None:
    app = create_app(tmp_path / "sandbox.db", SandboxOptions(fail_rate=1.0, seed=3))

    def provider(url: str, transport: Transport | None) -> PachydermProvider:
        config = PachydermTarget(provider="pachyderm", url=url, timeout=5, retries=0)
        return connect(connecting("pachyderm", config, transport=transport, base_url=url))

    errors = observe_failures(app, provider, over_http=over_http)
    assert all(isinstance(e, RetryableError) for e in errors), errors
    seen = [str(e) for e in errors]
    assert len(seen) == 12
    assert any("RemoteProtocolError" in m or "ReadError" in m for m in seen), seen
    assert any("503" in m or "unavailable" in m for m in seen), seen


def test_a_pipeline_made_by_pachctl_with_the_same_spec_is_adopted_without_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    folder = write(tmp_path / "m", PROJECT, pipeline("edges", ["images"]))

    async def by_hand() -> None:
        # What a CI script did before: the same spec, one default written out.
        provider = sandbox(
            "pachyderm", PachydermTarget(provider="pachyderm"), load(folder, LoadOptions(env={}))
        )
        client = provider.client  # type: ignore[attr-defined]
        await client.create_project("vision", "quickstart", update=False)
        await client.create_repo("vision", "images", "", update=False)
        spec = {
            "pipeline": {"name": "edges", "project": {"name": "vision"}},
            "transform": {"image": "alpine:3.20", "cmd": ["run"]},
            "input": {"pfs": {"repo": "images", "glob": "/*"}},
            "datumTries": 3,
        }
        await client.create_pipeline(spec, update=False, reprocess=False)
        await provider.aclose()

    asyncio.run(by_hand())
    sandbox.reset()
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert "adopt" in capsys.readouterr().out
    assert sandbox.recorder.mutating() == []
    assert sandbox.stats()["restarts"] == {}
    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox) == 0


def test_an_orphaned_pipeline_keeps_running_and_its_data_when_it_leaves_the_manifests(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(tmp_path / "sandbox.db")
    orphan = pipeline("edges", ["images"]).replace(
        "project: vision}", "project: vision, deletionPolicy: Orphan}"
    )
    folder = write(tmp_path / "m", PROJECT, orphan, pipeline("other", ["images"]))
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    write(folder, PROJECT, pipeline("other", ["images"]))
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) == 0
    assert sandbox.recorder.mutating() == []
    write(folder, PROJECT)
    assert run_cli("apply", str(folder), "--yes", "--prune", connector=sandbox) == 0
    assert names(sandbox.recorder.mutating(), "DeletePipeline") == ["other"]
