"""The Insights sandbox refuses what the Package Manager refuses, with its statuses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from reconciler.providers.insights.artifact import archive
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.insights import InsightsOptions

API = "/packagemanager/v2"


def kxi(name: str = "trades", version: str = "1.0.0", pipeline_spec: str = "src/rt.q") -> bytes:
    manifest = (
        f"name: {name}\nversion: {version}\npipelines:\n  rt: {{file: pipelines/rt.yaml}}\n"
    ).encode()
    pipeline = f"name: rt\nspec: {pipeline_spec}\n".encode()
    return archive(
        [("manifest.yaml", manifest), ("pipelines/rt.yaml", pipeline), ("src/rt.q", b"1+1")]
    )


PACKAGE = {"name": "trades", "version": "1.0.0", "manifest": {"name": "trades", "version": "1.0.0"}}
"""A Package object, as the client sends one to register or validate a package."""


def session(tmp_path: Path, steps: Any) -> Any:
    app = create_app(
        tmp_path / "sandbox.db", SandboxOptions(insights=InsightsOptions(deploy_delay=0))
    )

    async def run() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sb") as client:
            return await steps(client)

    return asyncio.run(run())


def test_pushing_an_existing_version_needs_force(tmp_path: Path) -> None:
    async def steps(client: httpx.AsyncClient) -> list[int]:
        first = await client.post(f"{API}/artifacts", content=kxi())
        again = await client.post(f"{API}/artifacts", content=kxi())
        forced = await client.post(f"{API}/artifacts", params={"force": "true"}, content=kxi())
        return [first.status_code, again.status_code, forced.status_code]

    assert session(tmp_path, steps) == [201, 409, 201]


def test_names_and_versions_follow_the_package_rules(tmp_path: Path) -> None:
    async def steps(client: httpx.AsyncClient) -> list[int]:
        bad_name = await client.post(f"{API}/artifacts", content=kxi(name="Trades_1"))
        too_long = await client.post(f"{API}/artifacts", content=kxi(name="t" * 25))
        bad_version = await client.post(f"{API}/artifacts", content=kxi(version="latest"))
        not_tar = await client.post(f"{API}/artifacts", content=b"zip?")
        return [r.status_code for r in (bad_name, too_long, bad_version, not_tar)]

    assert session(tmp_path, steps) == [422, 422, 422, 400]


def test_deploying_a_missing_package_is_404_and_deleting_a_used_one_409(tmp_path: Path) -> None:
    async def steps(client: httpx.AsyncClient) -> list[Any]:
        missing = await client.post(
            f"{API}/deployments", json={"package": "trades", "version": "1.0.0"}
        )
        await client.post(f"{API}/artifacts", content=kxi())
        unregistered = await client.post(
            f"{API}/deployments", json={"package": "trades", "version": "1.0.0"}
        )
        created = await client.post(f"{API}/packages", json=PACKAGE)
        deployed = await client.post(
            f"{API}/deployments", json={"package": "trades", "version": "1.0.0"}
        )
        in_use = await client.delete(f"{API}/packages/trades", params={"version": "1.0.0"})
        running = await client.get(f"{API}/deployments/{deployed.json()['data']['id']}")
        return [
            missing.status_code,
            unregistered.status_code,
            created.status_code,
            deployed.status_code,
            in_use.status_code,
            in_use.json()["detail"],
            running.json()["data"]["status"],
        ]

    assert session(tmp_path, steps) == [
        404,
        404,
        201,
        201,
        409,
        "package trades 1.0.0 is deployed: tear it down first",
        "Running",
    ]


def test_validate_refuses_a_component_whose_file_is_missing(tmp_path: Path) -> None:
    broken = archive(
        [
            (
                "manifest.yaml",
                b"name: t\nversion: 1.0.0\npipelines:\n  rt: {file: pipelines/rt.yaml}\n",
            )
        ]
    )

    async def steps(client: httpx.AsyncClient) -> tuple[int, str]:
        await client.post(f"{API}/artifacts", content=broken)
        answer = await client.post(
            f"{API}/packages/validate",
            json={**PACKAGE, "name": "t", "manifest": {"name": "t", "version": "1.0.0"}},
        )
        return answer.status_code, answer.json()["detail"]

    status, detail = session(tmp_path, steps)
    assert status == 422
    assert "pipelines.rt: pipelines/rt.yaml is not in the package" in detail


def test_the_contract_is_served_at_openapi(tmp_path: Path) -> None:
    async def steps(client: httpx.AsyncClient) -> Any:
        return (await client.get("/openapi")).json()

    paths = session(tmp_path, steps)["paths"]
    assert "/packagemanager/v2/deployments/{id}/runtime" in paths
