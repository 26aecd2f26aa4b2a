"""The kdb Insights provider against the sandbox, in-process and over uvicorn: what a
user sees happen to packages, deployments and their data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxOptions
from tests.insights.world import FAST, World, deployment_manifest, package_manifest, worlds

PUSH = "POST /artifacts"
TEARDOWN = "DELETE /deployments/{id}"
DEPLOY = "POST /deployments"
REDEPLOY_ONE = [TEARDOWN, DEPLOY]
"""A component deployed again: torn down alone (component, component_id), then deployed
as an entity (whether a bounce loads a re-pushed artifact is not documented)."""


def test_create_then_nothing_to_do(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.run("plan", "--detailed-exitcode") == 2
    assert world.apply() == 0
    assert world.operations() == [PUSH, "POST /packages", "POST /deployments"]
    stats = world.stats()
    assert stats["events"] == {"artifact push": 1, "deploy equities": 1}
    assert stats["persisted_data"] == ["equities"]
    world.reset()
    capsys.readouterr()
    assert world.run("plan", "--detailed-exitcode") == 0
    assert "No changes." in capsys.readouterr().out
    assert world.apply() == 0
    assert world.stats()["mutating"] == 0
    assert world.operations() == []


def test_a_pipeline_file_change_pushes_once_and_bounces_that_pipeline_alone(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.apply() == 0
    world.reset()
    world.edit("pipelines/equities-rt.yaml", "maxWorkers: 10", "maxWorkers: 12")
    capsys.readouterr()
    assert world.run("plan", "--detailed-exitcode") == 2
    shown = capsys.readouterr().out
    assert "files changed: pipelines/equities-rt.yaml" in shown
    assert "bounce: pipeline:equities-rt" in shown
    assert world.apply() == 0
    assert world.operations() == [PUSH, *REDEPLOY_ONE]
    push, teardown, deploy = world.mutating()
    assert push.query == "force=true"
    assert "component=pipelines" in teardown.query and "component_id=equities-rt" in teardown.query
    assert deploy.body == {
        "package": "equities",
        "version": "0.0.1",
        "entities": [{"type": "pipeline", "name": "equities-rt"}],
    }
    assert world.stats()["restarts"] == {"insights:equities/pipeline:equities-rt": 1}
    assert world.run("plan", "--detailed-exitcode") == 0


def test_a_pipeline_spec_source_belongs_to_its_pipeline(world: World) -> None:
    assert world.apply() == 0
    world.reset()
    world.edit("src/static.json", '"retries": 60', '"retries": 61')
    assert world.apply() == 0
    assert world.stats()["restarts"] == {"insights:equities/pipeline:static": 1}


def test_a_change_outside_any_component_bounces_them_all(world: World) -> None:
    assert world.apply() == 0
    world.reset()
    world.edit("router/router.yaml", "size: 0", "size: 1")
    assert world.apply() == 0
    # A component no teardown takes alone (the router): the whole deployment, data kept.
    assert world.operations() == [PUSH, TEARDOWN, DEPLOY]
    assert "cleanup=false" in world.mutating()[1].query
    assert world.stats()["persisted_data"] == ["equities"]
    assert set(world.stats()["restarts"]) == {
        "insights:equities/database:equities",
        "insights:equities/pipeline:equities-rt",
        "insights:equities/pipeline:static",
        "insights:equities/view:HLOC",
    }


HOTLOAD = "  updateStrategy: hotload\n  hotloadTargets: [equities-dap]\n"


def test_a_new_version_is_hot_loaded_and_the_old_one_removed(world: World) -> None:
    world.manifests(package_manifest(), deployment_manifest(HOTLOAD))
    assert world.apply() == 0
    world.reset()
    world.set_version("0.0.2")
    (world.package_file("src/analytics.q")).write_text("f:{x+1}\n")  # code only
    world.manifests(package_manifest("0.0.2"), deployment_manifest(HOTLOAD))
    assert world.apply() == 0
    assert world.operations() == [
        PUSH,
        "POST /packages",
        "PATCH /deployments/{id}/runtime",
        "DELETE /packages/equities",
    ]
    assert world.mutating()[2].body["targets"] == ["equities-dap"]
    assert world.mutating()[-1].query == "version=0.0.1"
    stats = world.stats()
    assert stats["restarts"] == {}
    assert "teardown equities" not in stats["events"]
    assert world.run("plan", "--detailed-exitcode") == 0


def test_a_new_version_that_changes_configuration_is_redeployed_even_with_hotload(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.manifests(package_manifest(), deployment_manifest(HOTLOAD))
    assert world.apply() == 0
    world.reset()
    world.set_version("0.0.2")
    world.edit("pipelines/equities-rt.yaml", "maxWorkers: 10", "maxWorkers: 12")
    world.manifests(package_manifest("0.0.2"), deployment_manifest(HOTLOAD))
    capsys.readouterr()
    assert world.run("plan") == 0
    assert "changes the configuration of components (pipelines/equities-rt.yaml)" in (
        capsys.readouterr().out
    )
    assert world.apply() == 0
    assert "PATCH /deployments/{id}/runtime" not in world.operations()
    assert [op for op in world.operations() if op in (TEARDOWN, DEPLOY)] == [TEARDOWN, DEPLOY]


def test_hotload_without_processes_to_load_into_is_an_input_error(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.manifests(package_manifest(), deployment_manifest("  updateStrategy: hotload\n"))
    assert world.run("validate") == 3
    assert "name them in hotloadTargets" in capsys.readouterr().err


def test_a_new_version_with_redeploy_tears_down_keeping_data(world: World) -> None:
    assert world.apply() == 0
    world.reset()
    world.set_version("0.0.2")
    world.manifests(package_manifest("0.0.2"), deployment_manifest())
    assert world.apply() == 0
    assert world.operations() == [
        PUSH,
        "POST /packages",
        "DELETE /deployments/{id}",
        "POST /deployments",
        "DELETE /packages/equities",
    ]
    teardown = world.mutating()[2]
    assert teardown.query == "cleanup=false"
    stats = world.stats()
    assert stats["events"]["teardown equities"] == 1
    assert "cleanup equities" not in stats["events"]
    assert stats["persisted_data"] == ["equities"]
    assert world.run("plan", "--detailed-exitcode") == 0


def test_an_env_change_redeploys_without_cleanup(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.apply() == 0
    world.reset()
    world.manifests(
        package_manifest(), deployment_manifest("  env: {equities-rt: {LOG_LEVEL: debug}}\n")
    )
    capsys.readouterr()
    assert world.run("plan", "--detailed-exitcode") == 2
    assert "persisted data kept" in capsys.readouterr().out
    assert world.apply() == 0
    assert world.operations() == ["DELETE /deployments/{id}", "POST /deployments"]
    assert world.mutating()[1].body["env"] == {"equities-rt": {"LOG_LEVEL": "debug"}}
    assert world.stats()["persisted_data"] == ["equities"]
    assert world.run("plan", "--detailed-exitcode") == 0


@pytest.mark.parametrize("cleanup", [False, True], ids=["keeps-data", "cleanup"])
def test_delete_keeps_data_unless_the_manifest_asked(world: World, cleanup: bool) -> None:
    extra = "  cleanupOnDelete: true\n" if cleanup else ""
    world.manifests(package_manifest(), deployment_manifest(extra))
    assert world.apply() == 0
    world.reset()
    world.manifests(package_manifest())
    assert world.apply("--prune") == 0
    assert world.operations() == ["DELETE /deployments/{id}"]
    assert world.mutating()[0].query == f"cleanup={'true' if cleanup else 'false'}"
    assert world.stats()["persisted_data"] == ([] if cleanup else ["equities"])


def test_it_converges_when_the_server_echoes_nothing_kx_does_not_document(
    tmp_path: Path,
) -> None:
    """KX documents no checksum in package answers, nor the env and components of a
    deployment: what was pushed and deployed is remembered in the state store, so a
    server that shows only names, versions and status still converges, a one-file change
    still touches that one pipeline, and an env change still redeploys."""
    options = SandboxOptions(insights=replace(FAST, invented_fields=False))
    for world in worlds(tmp_path, True, options):
        assert world.apply() == 0
        world.reset()
        assert world.run("plan", "--detailed-exitcode") == 0
        assert world.apply() == 0
        assert world.stats()["mutating"] == 0
        world.edit("pipelines/equities-rt.yaml", "maxWorkers: 10", "maxWorkers: 12")
        assert world.apply() == 0
        assert world.operations() == [PUSH, *REDEPLOY_ONE]
        assert world.stats()["restarts"] == {"insights:equities/pipeline:equities-rt": 1}
        world.reset()
        assert world.apply() == 0
        assert world.stats()["mutating"] == 0
        world.manifests(
            package_manifest(),
            deployment_manifest("  env:\n    equities-rt: {LOG_LEVEL: debug}\n"),
        )
        assert world.apply() == 0
        assert "DELETE /deployments/{id}" in world.operations()
        world.reset()
        assert world.apply() == 0
        assert world.stats()["mutating"] == 0


def test_asynchronous_teardowns_and_statuses_in_any_case_are_waited_for(tmp_path: Path) -> None:
    """Teardowns finish later (the deployment shows Inactive, still listed); statuses come
    in a casing nobody documents; waits read the list, never one GET per deployment."""
    options = SandboxOptions(insights=replace(FAST, status_case="upper", invented_fields=False))
    for world in worlds(tmp_path, True, options):
        assert world.apply() == 0
        assert world.run("plan", "--detailed-exitcode") == 0
        world.manifests(
            package_manifest(),
            deployment_manifest("  env:\n    equities-rt: {LOG_LEVEL: debug}\n"),
        )
        assert world.apply() == 0  # a redeploy: teardown, wait for Inactive, deploy
        assert world.operations()[-2:] == ["DELETE /deployments/{id}", "POST /deployments"]
        assert world.run("plan", "--detailed-exitcode") == 0
        # Pruned: the teardown completes before the package it runs is deleted.
        world.manifests("")
        assert world.apply("--prune", "--allow-mass-delete") == 0
        assert world.operations()[-2:] == ["DELETE /deployments/{id}", "DELETE /packages/equities"]
        calls = world.sandbox.recorder.calls
        assert not [c for c in calls if c.verb == "GET" and "/deployments/" in c.path]
        assert world.run("plan", "--detailed-exitcode") == 0


def test_a_components_change_deploys_or_tears_down_exactly_those(world: World) -> None:
    two = (
        "  components:\n    - {type: pipeline, name: equities-rt}\n"
        "    - {type: pipeline, name: static}\n"
    )
    one = "  components:\n    - {type: pipeline, name: equities-rt}\n"
    world.manifests(package_manifest(), deployment_manifest(one))
    assert world.apply() == 0
    world.reset()
    world.manifests(package_manifest(), deployment_manifest(two))
    assert world.apply() == 0
    assert world.operations() == [DEPLOY]
    assert world.mutating()[0].body["entities"] == [{"type": "pipeline", "name": "static"}]
    assert world.stats()["restarts"] == {"insights:equities/pipeline:static": 1}
    world.reset()
    world.manifests(package_manifest(), deployment_manifest(one))
    assert world.apply() == 0
    assert world.operations() == [TEARDOWN]
    assert "component_id=static" in world.mutating()[0].query
    assert world.stats()["restarts"] == {}
    assert world.run("plan", "--detailed-exitcode") == 0


def test_deployments_are_keyed_by_package(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.manifests(
        package_manifest(), deployment_manifest(), deployment_manifest(name="equities-two")
    )
    assert world.run("validate") == 3
    err = capsys.readouterr().err
    assert "has the package 'equities' of Deployment 'equities'" in err
    world.manifests(
        package_manifest(),
        deployment_manifest(
            "  components: [{type: pipeline, name: static}]\n  env: {static: {A: b}}\n"
        ),
    )
    assert world.run("validate") == 3
    assert "env goes only with a deploy of the whole package" in capsys.readouterr().err


def test_a_package_is_registered_with_its_package_object(world: World) -> None:
    """client.packages.create sends the whole Package object, built from the folder."""
    assert world.apply() == 0
    register = next(c for c in world.mutating() if c.path.endswith("/packages"))
    body = register.body
    assert (body["name"], body["version"]) == ("equities", "0.0.1")
    assert body["manifest"]["name"] == "equities"
    assert set(body["pipelines"]) == {"equities-rt", "static"}
    assert "equities" in body["databases"] and "HLOC" in body["views"]


def test_a_deployment_is_its_packages_whatever_its_manifest_is_called(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The id is the package's name: a manifest named otherwise is still found on the
    target, and pruned once it leaves the manifests (not forgotten as "gone")."""
    world.manifests(package_manifest(), deployment_manifest(name="equities-prod"))
    assert world.apply() == 0
    capsys.readouterr()
    assert world.run("plan", "--format", "json") == 0
    assert '"insights:Deployment/equities"' in capsys.readouterr().out
    assert world.run("plan", "--detailed-exitcode") == 0
    world.manifests(package_manifest())
    assert world.apply("--prune") == 0
    assert "DELETE /deployments/{id}" in world.operations()
    assert world.stats()["persisted_data"] == ["equities"]  # no cleanupOnDelete: kept


@pytest.mark.parametrize("cleanup", [False, True], ids=["keeps-data", "cleanup"])
def test_a_deployment_torn_down_outside_has_its_data_cleaned_up_only_if_asked(
    world: World, cleanup: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone tore the deployment down by hand (`kxi pm teardown`): its data stays. Once
    its manifest goes, cleanupOnDelete as last applied decides: the data is deleted by a
    cleanup (no teardown: there is nothing left to tear down), or kept and forgotten."""
    extra = "  cleanupOnDelete: true\n" if cleanup else ""
    world.manifests(package_manifest(), deployment_manifest(extra))
    assert world.apply() == 0
    world.outside("DELETE", f"/deployments/{world.deployment_id()}", wait="true")
    world.reset()
    world.manifests(package_manifest())
    capsys.readouterr()
    assert world.run("plan", "--prune") == 0
    shown = capsys.readouterr().out
    if cleanup:
        assert "spec.cleanupOnDelete as last applied asks" in shown
    else:
        assert "was stopped on the target; what it left behind stays" in shown
    assert world.apply("--prune") == 0
    assert world.operations() == (["POST /deployments/{id}/cleanup"] if cleanup else [])
    if cleanup:
        assert world.mutating()[0].query == "wait=true"
    assert world.stats()["persisted_data"] == ([] if cleanup else ["equities"])
    world.reset()
    assert world.apply("--prune") == 0  # forgotten either way: nothing more to do
    assert world.operations() == []


def test_a_deployment_torn_down_outside_is_deployed_again_while_in_the_manifests(
    world: World,
) -> None:
    world.manifests(package_manifest(), deployment_manifest("  cleanupOnDelete: true\n"))
    assert world.apply() == 0
    world.outside("DELETE", f"/deployments/{world.deployment_id()}", wait="true")
    world.reset()
    assert world.apply("--prune") == 0
    assert world.operations() == ["POST /deployments"]
    assert world.stats()["persisted_data"] == ["equities"]  # its data was kept and reused


def test_the_sandbox_cleans_up_a_running_deployment_without_tearing_it_down(
    world: World,
) -> None:
    """client.deployments.cleanup: "Remove persisted data without tearing down the
    deployment"; without `wait` it is done by the time the deployment is next read."""
    assert world.apply() == 0
    world.outside("POST", f"/deployments/{world.deployment_id()}/cleanup")
    assert [d["status"] for d in world.outside("GET", "/deployments")] == ["Running"]
    assert world.stats()["persisted_data"] == []
