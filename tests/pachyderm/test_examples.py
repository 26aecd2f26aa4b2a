"""Pachyderm's own example specs: applied to the sandbox, then nothing left to do."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from reconciler.sandbox import SandboxOptions
from reconciler.sandbox.pachyderm import Pachd, PachydermOptions
from reconciler.sandbox.store import Store
from tests.conftest import DATA, run_cli
from tests.pachyderm.helpers import Call, Sandbox, served
from tests.pachyderm_examples import load_specs, valid_examples, write_folder

EMBEDDED = "targets:\n  pachyderm: {provider: pachyderm, url: embedded}\n"


@cache
def _validator(package: str, message: str) -> Draft7Validator | None:
    path = DATA / "pachyderm" / "jsonschema" / package / f"{message}.schema.json"
    if not path.is_file():
        return None
    return Draft7Validator(json.loads(path.read_text()))


def _schema_errors(call: Call) -> list[str]:
    """What the real JSON Schemas say is wrong with a request body (none known: [])."""
    package = call.rpc.split(".", 1)[0]
    errors = []
    validator = _validator(package, f"{call.method}Request")
    if validator is not None:
        errors += [f"{call.rpc}: {e.message}" for e in validator.iter_errors(call.body)]
    if call.method == "CreatePipelineV2":
        request = json.loads(call.body["createPipelineRequestJson"])
        pipeline = _validator("pps_v2", "CreatePipelineRequest")
        assert pipeline is not None
        errors += [f"{call.rpc} spec: {e.message}" for e in pipeline.iter_errors(request)]
    return errors


@pytest.fixture(params=["in-process", "uvicorn"])
def applied(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Sandbox]]:
    """The examples applied once, through the sandbox in-process or over real HTTP."""
    monkeypatch.setenv("EXAMPLE_SECRET", "hunter2-secret-value")
    paths = valid_examples(DATA)
    assert sum(len(load_specs(p)) for p in paths) == 56  # the 56 valid specs of NOTES.md
    sandbox = Sandbox(tmp_path / "sandbox.db")
    if request.param == "in-process":
        folder = write_folder(tmp_path / "examples", paths, EMBEDDED)
        assert run_cli("apply", str(folder), "--yes", connector=sandbox.connector) == 0
        yield folder, sandbox
        return
    with served(sandbox.recorder) as url:
        config = f"targets:\n  pachyderm: {{provider: pachyderm, url: '{url}'}}\n"
        folder = write_folder(tmp_path / "examples", paths, config)
        sandbox.connector = None  # the real one: over HTTP to the served sandbox
        assert run_cli("apply", str(folder), "--yes") == 0
        yield folder, sandbox


def test_every_example_applies_then_plans_empty_with_no_calls_that_change_anything(
    applied: tuple[Path, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, sandbox = applied
    created = [c for c in sandbox.recorder.calls if c.method == "CreatePipelineV2"]
    assert len(created) == 56
    assert all("update" not in c.body for c in created)
    sandbox.reset()

    assert run_cli("plan", str(folder), "--detailed-exitcode", connector=sandbox.connector) == 0
    assert "No changes" in capsys.readouterr().out
    assert run_cli("apply", str(folder), "--yes", connector=sandbox.connector) == 0
    stats = sandbox.stats()
    assert stats["mutating"] == 0
    assert stats["restarts"] == {}
    # Four list calls and the cluster defaults observe the whole target, and one read of
    # defaults per project the manifests name: reads grow with projects, never with
    # pipelines; pachd's own `default` project, which no example names, is not read.
    store = Store(sandbox.db)
    try:
        projects = [p for p in Pachd(store).ListProject({}) if p["project"]["name"] != "default"]
    finally:
        store.close()
    assert stats["reads"] == 2 * (5 + len(projects))
    assert stats["calls"]["POST /api/pps_v2.API/GetProjectDefaults"] == 2 * len(projects)
    assert sorted(stats["calls"]) == [
        "POST /api/pfs_v2.API/ListProject",
        "POST /api/pfs_v2.API/ListRepo",
        "POST /api/pps_v2.API/GetClusterDefaults",
        "POST /api/pps_v2.API/GetProjectDefaults",
        "POST /api/pps_v2.API/ListPipeline",
        "POST /api/pps_v2.API/ListSecret",
    ]


def test_every_request_body_validates_against_the_real_schemas(
    applied: tuple[Path, Sandbox],
) -> None:
    _, sandbox = applied
    calls = sandbox.recorder.calls
    checked = {c.method for c in calls if _validator(c.rpc.split(".")[0], f"{c.method}Request")}
    assert {"CreateProject", "CreateRepo", "CreatePipelineV2", "ListPipeline"} <= checked
    errors = [error for call in calls for error in _schema_errors(call)]
    assert errors == []


def test_secret_values_reach_pachd_and_nothing_else(
    applied: tuple[Path, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, sandbox = applied
    secrets = [c for c in sandbox.recorder.calls if c.method == "CreateSecret"]
    assert len(secrets) == 4
    assert run_cli("plan", str(folder), "--format", "json", connector=sandbox.connector) == 0
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err
    assert b"hunter2" not in (folder / ".reconciler" / "state.db").read_bytes()


def test_pipelines_are_created_after_what_they_read(applied: tuple[Path, Sandbox]) -> None:
    _, sandbox = applied
    made: set[tuple[str, str]] = set()
    for call in sandbox.recorder.calls:
        body: Any = call.body
        if call.method == "CreateRepo":
            made.add((body["repo"]["project"]["name"], body["repo"]["name"]))
        if call.method == "CreatePipelineV2":
            spec = json.loads(body["createPipelineRequestJson"])
            project = spec["pipeline"]["project"]["name"]
            for repo in _repos(spec.get("input")):
                assert (project, repo) in made, f"{spec['pipeline']} before its input {repo}"
            made.add((project, spec["pipeline"]["name"]))


def _repos(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pfs"]["repo"]] if "pfs" in node else []
        for value in node.values():
            found += _repos(value) if isinstance(value, list) else []
        return found
    if isinstance(node, list):
        return [repo for item in node for repo in _repos(item)]
    return []


def _unknown_fields(value: Any, message: type[Any], where: str) -> list[str]:
    """Fields of `value` (JSON) that the real message class `message` (pachyderm_sdk's
    betterproto classes, generated from pachd's protos) does not have, at any depth;
    proto names and JSON names both count, as protojson reads both."""
    import betterproto

    if not isinstance(value, dict):
        return []
    meta = message()._betterproto
    fields = {f.name: f for f in dataclasses.fields(message)}
    names = {**{n: n for n in fields}, **{betterproto.casing.camel_case(n): n for n in fields}}
    found = []
    for key, item in value.items():
        name = names.get(key)
        if name is None:
            found.append(f"{where}.{key}")
            continue
        proto = fields[name].metadata["betterproto"]
        child = meta.cls_by_field.get(name)
        if proto.proto_type == "map":
            child = meta.cls_by_field.get(f"{name}.value")
            items = list(item.values()) if isinstance(item, dict) else []
        else:
            items = item if isinstance(item, list) else [item]
        if isinstance(child, type) and issubclass(child, betterproto.Message):
            for entry in items:
                found.extend(_unknown_fields(entry, child, f"{where}.{key}"))
    return found


def test_every_request_body_is_a_real_pachd_message_with_no_unknown_field(
    applied: tuple[Path, Sandbox],
) -> None:
    """pachd's gateway drops unknown fields in silence: a misspelt one would be lost."""
    from pachyderm_sdk.api import pfs, pps

    packages = {"pfs_v2": pfs, "pps_v2": pps}
    _, sandbox = applied
    problems: list[str] = []
    checked = set()
    for call in sandbox.recorder.calls:
        package = packages.get(call.rpc.split(".")[0])
        if package is None:
            continue
        request = getattr(package, f"{call.method}Request", None)
        if request is None:  # google.protobuf.Empty (ListSecret): no field at all
            problems += [f"{call.method}.{key}" for key in call.body or {}]
        else:
            problems += _unknown_fields(call.body, request, call.method)
        checked.add(call.method)
        if call.method == "CreatePipelineV2":
            spec = json.loads(call.body["createPipelineRequestJson"])
            problems += _unknown_fields(spec, pps.CreatePipelineRequest, "spec")
    assert {"CreateProject", "CreateRepo", "CreatePipelineV2", "GetClusterDefaults"} <= checked
    assert problems == []
    # The check itself sees a misspelt field, at any depth, in either naming.
    misspelt = {"transform": {"imag": "x"}, "parallelism_spec": {"constnt": 1}}
    assert _unknown_fields(misspelt, pps.CreatePipelineRequest, "spec") == [
        "spec.transform.imag",
        "spec.parallelism_spec.constnt",
    ]


@pytest.mark.parametrize("mode", ["no cluster defaults", "project defaults everywhere"])
def test_the_examples_converge_under_other_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The 56 specs applied once make no call on the next run, with pachd's cluster
    defaults never set, and with defaults set on every project before the pipelines."""
    monkeypatch.setenv("EXAMPLE_SECRET", "hunter2-secret-value")
    cluster = None if mode == "no cluster defaults" else PachydermOptions().cluster_defaults
    sandbox = Sandbox(
        tmp_path / "sandbox.db",
        SandboxOptions(pachyderm=PachydermOptions(cluster_defaults=cluster)),
    )
    folder = write_folder(tmp_path / "examples", valid_examples(DATA), EMBEDDED)
    if mode == "project defaults everywhere":
        assert run_cli("apply", str(folder), "--yes", "--select", "Project", connector=sandbox) == 0
        store = Store(sandbox.db)
        try:
            platform = Pachd(store)
            with store.transaction():
                for project in platform.ListProject({}):
                    platform.SetProjectDefaults(
                        {
                            "project": project["project"],
                            "projectDefaultsJson": json.dumps(
                                {"createPipelineRequest": {"datumTries": 2, "salt": "team"}}
                            ),
                        }
                    )
        finally:
            store.close()
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    sandbox.reset()
    capsys.readouterr()
    assert run_cli("apply", str(folder), "--yes", connector=sandbox) == 0
    assert "No changes" in capsys.readouterr().out
    stats = sandbox.stats()
    assert (stats["mutating"], stats["restarts"]) == (0, {})
