"""`reconciler doctor`: reachability, authentication and the API contract, per target."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from reconciler import schemas
from reconciler.providers.insights.client import differences
from tests.insights.test_auth_and_errors import AUTH
from tests.insights.world import World, worlds
from tests.pachyderm.helpers import free_port, served


def test_every_check_passes_against_the_sandbox(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.run("doctor", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    checks = {c["check"]: c for c in report["targets"]["insights"]}
    assert set(checks) == {"reachable", "authenticated", "API contract"}
    assert "all 11 operations the provider uses match /openapi" in checks["API contract"]["detail"]
    assert world.mutating() == []


def test_bad_credentials_fail_the_authentication_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INSIGHTS_CLIENT_ID", "reconciler")
    monkeypatch.setenv("INSIGHTS_CLIENT_SECRET", "nope")
    for world in worlds(tmp_path, True, AUTH):
        assert world.run("doctor") == 1
        out = capsys.readouterr().out
        assert "authenticated" in out and "FAILED" in out
        assert "Invalid client" in out
        assert "nope" not in out


@pytest.mark.slow
def test_an_unreachable_instance_fails_reachability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for world in worlds(tmp_path, False):
        world.url = f"http://127.0.0.1:{free_port()}"
        world.connector = None
        world.config(", timeout: 2")
        assert world.run("doctor", "--format", "json") == 1
        report = json.loads(capsys.readouterr().out)
        assert report["targets"]["insights"][0]["check"] == "reachable"
        assert report["targets"]["insights"][0]["ok"] is False


def _contract() -> dict[str, Any]:
    return copy.deepcopy(schemas.load(schemas.PACKAGE_MANAGER))


def _said(live: dict[str, Any]) -> list[str]:
    return [str(d) for d in differences(live)]


def test_a_missing_operation_is_listed_with_what_it_breaks() -> None:
    live = _contract()
    del live["paths"]["/packagemanager/v2/deployments/{id}/runtime"]
    assert _said(live) == [
        "patchDeploymentRuntime (PATCH /packagemanager/v2/deployments/{id}/runtime): the"
        " instance has no such operation; breaks hot-loading a new version"
    ]


def test_a_description_from_the_service_root_with_other_names_matches() -> None:
    live = _contract()
    renamed = {}
    for path, item in live["paths"].items():
        operations = {
            key: (
                {**value, "operationId": f"x{value.get('operationId')}"}
                if key != "parameters"
                else value
            )
            for key, value in item.items()
        }
        renamed[path.removeprefix("/packagemanager").replace("{id}", "{deployment_id}")] = (
            operations
        )
    live["paths"] = renamed
    assert differences(live) == []


def test_parameters_are_compared_both_ways() -> None:
    live = _contract()
    delete = live["paths"]["/packagemanager/v2/deployments/{id}"]["delete"]
    delete["parameters"] = [
        {"name": "force", "in": "query", "required": True, "schema": {"type": "boolean"}}
    ]
    said = _said(live)
    assert any("query parameter cleanup" in d and "does not take it" in d for d in said)
    assert any("query parameter wait" in d and "does not take it" in d for d in said)
    assert any(
        "query parameter force" in d and "requires it and the provider does not send it" in d
        for d in said
    )
    assert all("breaks tearing a deployment, or one of its components, down" in d for d in said)


def test_request_bodies_are_compared_field_by_field() -> None:
    live = _contract()
    ref = live["components"]["schemas"]["PackageRef"]
    ref["additionalProperties"] = False
    ref["properties"] = {"uuid": {"type": "string"}, "version": {"type": "integer"}}
    ref["required"] = ["uuid", "version"]
    said = _said(live)
    create = [d for d in said if d.startswith("createPackage ")]
    assert any("request body field name): the instance does not accept it" in d for d in create)
    assert any("field uuid): the instance requires it" in d for d in create)
    assert any("field version): is integer there, string here" in d for d in create)
    assert all("breaks registering a pushed package version" in d for d in create)


def test_a_response_without_a_field_the_provider_reads_is_a_difference() -> None:
    live = _contract()
    version = live["components"]["schemas"]["PackageVersion"]
    del version["properties"]["version"]
    said = _said(live)
    assert (
        "listPackages (GET /packagemanager/v2/packages response field data[].version): the"
        " instance does not return it; breaks observing packages: every plan and apply"
    ) in said


def test_a_body_in_another_media_type_is_a_difference() -> None:
    live = _contract()
    push = live["paths"]["/packagemanager/v2/artifacts"]["post"]["requestBody"]["content"]
    push["multipart/form-data"] = push.pop("application/octet-stream")
    said = _said(live)
    assert any(
        "pushArtifact" in d and "takes multipart/form-data, not application/octet-stream" in d
        for d in said
    )


def _differing(sandbox: Starlette, live: dict[str, Any]) -> Starlette:
    """The sandbox, but describing itself as `live` through a Swagger UI page at /openapi
    that links the JSON document (as such pages do), the way a real instance might."""
    page = (
        "<!doctype html><html><body><div id=swagger-ui></div><script>"
        "SwaggerUIBundle({url: '/docs/openapi.json', dom_id: '#swagger-ui'})"
        "</script></body></html>"
    )

    async def html(request: Request) -> Response:
        return HTMLResponse(page)

    async def document(request: Request) -> Response:
        return JSONResponse(live)

    return Starlette(
        routes=[
            Route("/openapi", html),
            Route("/docs/openapi.json", document),
            Mount("/", app=sandbox),
        ]
    )


def test_doctor_fails_against_a_description_that_differs_and_says_what_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = _contract()
    del live["components"]["schemas"]["Deployment"]["properties"]["status"]
    world = next(iter(worlds(tmp_path, False)))
    app = _differing(world.sandbox.app, live)
    with served(app) as url:
        world.url = url
        world.connector = None
        world.config()
        assert world.run("doctor", "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)
    checks = {c["check"]: c for c in report["targets"]["insights"]}
    assert checks["reachable"]["ok"] and checks["authenticated"]["ok"]
    contract = checks["API contract"]
    assert contract["ok"] is False
    assert "/docs/openapi.json" in contract["detail"]
    assert "response field data[].status): the instance does not return it" in contract["detail"]
    assert "waiting until they are Running or torn down" in contract["detail"]


def test_doctor_says_when_no_description_is_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = next(iter(worlds(tmp_path, False)))

    async def nothing(request: Request) -> Response:
        return PlainTextResponse("not here", status_code=404)

    app = Starlette(
        routes=[
            Route("/openapi", nothing),
            Route("/packagemanager/openapi.json", nothing),
            Mount("/", app=world.sandbox.app),
        ]
    )
    with served(app) as url:
        world.url = url
        world.connector = None
        world.config()
        assert world.run("doctor", "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)
    contract = {c["check"]: c for c in report["targets"]["insights"]}["API contract"]
    assert contract["ok"] is False
    assert "no OpenAPI description at /openapi, /packagemanager/openapi.json" in contract["detail"]
