"""The Pachyderm emulator, through the provider's HTTP client, in-process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import PermanentError, RetryableError
from reconciler.providers.http import HttpClient, HttpError, asgi_transport
from reconciler.sandbox import SandboxOptions, create_app
from tests.conftest import DATA

Scenario = Callable[[HttpClient], Awaitable[Any]]


def run(tmp_path: Path, scenario: Scenario, options: SandboxOptions | None = None) -> Any:
    async def main() -> Any:
        app = create_app(tmp_path / "sandbox.db", options or SandboxOptions())
        client = HttpClient("http://sandbox", platform="pachyderm", transport=asgi_transport(app))
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def pipeline_request(name: str, repo: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "pipeline": {"name": name, "project": {"name": "vision"}},
        "transform": {"cmd": ["python3", "/run.py"]},
        "input": {"pfs": {"repo": repo, "glob": "/*"}},
        **extra,
    }
    return {"createPipelineRequestJson": json.dumps(spec)}


async def seed(client: HttpClient) -> None:
    await client.post("/api/pfs_v2.API/CreateProject", {"project": {"name": "vision"}})
    await client.post(
        "/api/pfs_v2.API/CreateRepo",
        {"repo": {"name": "images", "project": {"name": "vision"}}, "description": "raw"},
    )


def test_pipelines_get_server_defaults_and_output_repos(tmp_path: Path) -> None:
    async def scenario(client: HttpClient) -> Any:
        await seed(client)
        await client.post("/api/pps_v2.API/CreatePipelineV2", pipeline_request("edges", "images"))
        pipelines = await client.post_stream("/api/pps_v2.API/ListPipeline", {"details": True})
        repos = await client.post_stream("/api/pfs_v2.API/ListRepo", {"type": "user"})
        return pipelines, repos

    pipelines, repos = run(tmp_path, scenario)
    (info,) = pipelines
    effective = json.loads(info["effectiveSpecJson"])
    assert effective["transform"]["image"] == "ubuntu:20.04"
    assert effective["datumTries"] == "3"
    assert effective["outputBranch"] == "master"
    assert effective["reprocessSpec"] == "until_success"
    # The 2.8 cluster defaults every install has (clusterstate/v2.8.0/defaults.go).
    assert effective["resourceRequests"] == {"cpu": 1, "memory": "256Mi", "disk": "1Gi"}
    # Input defaults live in the details, not in the effective spec (NOTES.md).
    assert effective["input"]["pfs"] == {"repo": "images", "glob": "/*"}
    assert info["details"]["input"]["pfs"] == {
        "repo": "images",
        "glob": "/*",
        "branch": "master",
        "name": "images",
        "repoType": "user",
        "project": "vision",
    }
    assert "image" not in json.loads(info["userSpecJson"])["transform"]
    assert sorted(r["repo"]["name"] for r in repos) == ["edges", "images"]


def test_every_update_is_a_restart_and_create_is_not_an_upsert(tmp_path: Path) -> None:
    async def scenario(client: HttpClient) -> Any:
        await seed(client)
        body = pipeline_request("edges", "images")
        await client.post("/api/pps_v2.API/CreatePipelineV2", body)
        with pytest.raises(HttpError, match="already exists") as refused:
            await client.post("/api/pps_v2.API/CreatePipelineV2", body)
        assert refused.value.status == 409
        await client.post("/api/pps_v2.API/CreatePipelineV2", {**body, "update": True})
        await client.post("/api/pps_v2.API/CreatePipelineV2", {**body, "update": True})
        return await client.request("GET", "/_sandbox/stats")

    stats = run(tmp_path, scenario)
    assert stats["restarts"] == {"pachyderm:Pipeline/vision/edges": 2}
    assert stats["calls"]["POST /api/pps_v2.API/CreatePipelineV2"] == 4
    assert stats["mutating"] == 6
    assert stats["reads"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"transfrom": {}}, "Additional properties are not allowed"),
        (
            {
                "input": {
                    "pfs": {"repo": "images", "glob": "/"},
                    "cron": {"name": "t", "spec": "@daily"},
                }
            },
            "multiple input types set",
        ),
        ({"input": {"pfs": {"repo": "nope", "glob": "/"}}}, "repo vision/nope not found"),
        ({"input": {"pfs": {"repo": "images"}}}, "input must specify a glob"),
        (
            {"transform": {"secrets": [{"name": "db", "key": "k", "envVar": "K"}]}},
            "missing Kubernetes secret db",
        ),
        (
            {"service": {"internalPort": 80}, "parallelismSpec": {"constant": 2}},
            "constant parallelism of 1",
        ),
    ],
)
def test_invalid_pipelines_are_refused_as_pachd_refuses_them(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    async def scenario(client: HttpClient) -> None:
        await seed(client)
        with pytest.raises(PermanentError, match=message):
            await client.post(
                "/api/pps_v2.API/CreatePipelineV2", pipeline_request("p", "images", **extra)
            )

    run(tmp_path, scenario)


def test_repos_projects_and_secrets(tmp_path: Path) -> None:
    async def scenario(client: HttpClient) -> None:
        await seed(client)
        missing = await client.post(
            "/api/pfs_v2.API/DeleteRepo", {"repo": {"name": "nope", "project": {"name": "vision"}}}
        )
        assert missing == {"deleted": False}
        with pytest.raises(HttpError, match="project nothere not found"):
            await client.post(
                "/api/pfs_v2.API/CreateProject", {"project": {"name": "nothere"}, "update": True}
            )
        with pytest.raises(HttpError, match="repo vision/images still exists"):
            await client.post("/api/pfs_v2.API/DeleteProject", {"project": {"name": "vision"}})
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "data": {"k": base64.b64encode(b"v").decode()},
        }
        file = base64.b64encode(json.dumps(secret).encode()).decode()
        await client.post("/api/pps_v2.API/CreateSecret", {"file": file})
        listed = await client.post("/api/pps_v2.API/ListSecret", {})
        assert [s["secret"]["name"] for s in listed["secretInfo"]] == ["db"]
        assert "data" not in listed["secretInfo"][0]
        await client.post(
            "/api/pps_v2.API/CreatePipelineV2",
            pipeline_request(
                "edges",
                "images",
                transform={"secrets": [{"name": "db", "key": "k", "envVar": "K"}]},
            ),
        )
        with pytest.raises(HttpError, match="delete the pipeline instead"):
            await client.post(
                "/api/pfs_v2.API/DeleteRepo",
                {"repo": {"name": "edges", "project": {"name": "vision"}}},
            )
        await client.post(
            "/api/pps_v2.API/DeletePipeline",
            {"pipeline": {"name": "edges", "project": {"name": "vision"}}},
        )
        repos = await client.post_stream("/api/pfs_v2.API/ListRepo", {})
        assert [r["repo"]["name"] for r in repos] == ["images"]

    run(tmp_path, scenario)


def test_list_repo_filters_by_project_and_breaks_on_a_quote_as_pachd_does(
    tmp_path: Path,
) -> None:
    async def scenario(client: HttpClient) -> None:
        await seed(client)
        await client.post("/api/pfs_v2.API/CreateProject", {"project": {"name": "audio"}})
        await client.post(
            "/api/pfs_v2.API/CreateRepo", {"repo": {"name": "clips", "project": {"name": "audio"}}}
        )

        async def names(body: dict[str, Any]) -> list[str]:
            repos = await client.post_stream("/api/pfs_v2.API/ListRepo", body)
            return sorted(r["repo"]["name"] for r in repos)

        assert await names({"projects": [{"name": "audio"}]}) == ["clips"]
        assert await names({"projects": [{"name": "nothere"}]}) == []
        assert await names({"projects": []}) == ["clips", "images"]  # no filter at all
        with pytest.raises(HttpError, match="syntax error"):
            await names({"projects": [{"name": "a'b"}]})

    run(tmp_path, scenario)


def test_injected_faults_are_retryable(tmp_path: Path) -> None:
    async def scenario(client: HttpClient) -> None:
        with pytest.raises(RetryableError):
            await client.post_stream("/api/pfs_v2.API/ListProject", {})

    run(tmp_path, scenario, SandboxOptions(fail_rate=1.0, seed=1))


def test_answers_carry_every_field_as_the_gateway_emits_them(tmp_path: Path) -> None:
    """EmitUnpopulated: every field of pachyderm_api.swagger.json's *Info definitions is
    present, unset ones as zero values (null, "0", the first enum name)."""
    swagger = DATA / "pachyderm" / "pachyderm_api.swagger.json"
    definitions = json.loads(swagger.read_text())["definitions"]

    async def scenario(client: HttpClient) -> Any:
        await seed(client)
        await client.post("/api/pps_v2.API/CreatePipelineV2", pipeline_request("edges", "images"))
        return (
            await client.post_stream("/api/pps_v2.API/ListPipeline", {}),
            await client.post_stream("/api/pfs_v2.API/ListRepo", {}),
            await client.post_stream("/api/pfs_v2.API/ListProject", {}),
        )

    pipelines, repos, projects = run(tmp_path, scenario)
    for answers, definition in (
        (pipelines, "pps_v2PipelineInfo"),
        (repos, "pfs_v2RepoInfo"),
        (projects, "pfs_v2ProjectInfo"),
    ):
        for answer in answers:
            assert set(answer) == set(definitions[definition]["properties"]), definition
    assert pipelines[0]["details"] is None and pipelines[0]["lastJobState"] == "JOB_STATE_UNKNOWN"
