"""`reconciler doctor`: reachability, authentication and the API contract, per target."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reconciler import schemas
from reconciler.providers.insights.client import missing
from tests.insights.test_auth_and_errors import AUTH
from tests.insights.world import World, worlds
from tests.pachyderm.helpers import free_port


def test_every_check_passes_against_the_sandbox(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.run("doctor", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    checks = {c["check"]: c for c in report["targets"]["insights"]}
    assert set(checks) == {"reachable", "authenticated", "API contract"}
    assert "all 11 operations" in checks["API contract"]["detail"]
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


def test_missing_operations_are_listed_by_method_and_path() -> None:
    live = copy.deepcopy(schemas.load(schemas.PACKAGE_MANAGER))
    del live["paths"]["/packagemanager/v2/deployments/{id}/runtime"]
    assert missing(live) == [
        "PATCH /packagemanager/v2/deployments/{id}/runtime (patchDeploymentRuntime)"
    ]


def test_a_description_from_the_service_root_with_other_names_matches() -> None:
    live = copy.deepcopy(schemas.load(schemas.PACKAGE_MANAGER))
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
    assert missing(live) == []
