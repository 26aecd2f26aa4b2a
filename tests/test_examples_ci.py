"""The ready-to-copy CI and deployment examples: every reconciler command they run is one
the command line accepts, the comment they post is the one the plan renders, and the
GitLab note script creates one note and then updates it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.cli import app
from reconciler.render.plan import COMMENT_MARKER
from tests.conftest import EXAMPLES
from tests.pachyderm.helpers import served
from tests.pod_security import pod_specs, violations

CI = EXAMPLES / "ci"
DEPLOY = EXAMPLES / "deploy"
VALUES = {
    "$PROFILE": "prod",
    '"$PROFILE"': "prod",
    "${{ github.base_ref }}": "main",
    "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
}


def parses(args: list[str]) -> None:
    """Raises (click's UsageError) unless reconciler accepts `args`."""
    command: Any = typer.main.get_command(app)
    # typer carries its own copy of click: know a group by its subcommands.
    while getattr(command, "commands", None):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name}"
        command = command.commands[name]
    command.make_context(command.name or "", list(args))


def shell_commands(script: str) -> list[list[str]]:
    """`reconciler ...` commands of a shell script, continuations joined, redirections
    and `|| ...` left out."""
    joined = script.replace("\\\n", " ")
    found = []
    for raw in joined.splitlines():
        if not raw.strip().startswith("reconciler "):
            continue
        command = re.split(r"\s(?:>|\|\|)\s", raw.strip())[0]
        for name, value in VALUES.items():
            command = command.replace(name, value)
        found.append(shlex.split(command)[1:])
    return found


def yaml_file(path: Path) -> list[Any]:
    return list(YAML(typ="safe").load_all(path.read_text()))


def test_the_github_workflow_validates_and_plans_pull_requests_and_applies_main() -> None:
    (workflow,) = yaml_file(CI / "github-actions.yml")
    plan_steps = workflow["jobs"]["plan"]["steps"]
    runs = [step["run"] for step in plan_steps if "run" in step]
    commands = [c for run in runs for c in shell_commands(run)]
    assert [c[0] for c in commands] == ["validate", "plan"]
    assert "--base" in commands[1] and "markdown" in commands[1]
    (comment,) = [s for s in plan_steps if s.get("uses", "").startswith("actions/github-script")]
    assert f"const marker = '{COMMENT_MARKER}'" in comment["with"]["script"]
    assert "updateComment" in comment["with"]["script"]
    checkout = plan_steps[0]
    assert checkout["with"]["fetch-depth"] == 0
    apply_runs = [s["run"] for s in workflow["jobs"]["apply"]["steps"] if "run" in s]
    (apply,) = [c for run in apply_runs for c in shell_commands(run)]
    assert apply[0] == "apply" and "--yes" in apply
    assert workflow["jobs"]["apply"]["if"] == (
        "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    )
    for command in [*commands, apply]:
        parses(command)


def test_pull_request_jobs_get_no_production_credentials() -> None:
    """A pull request runs its own workflow and reconciler.yaml: production secrets live
    in an environment only main may use, and plans refuse a changed target."""
    (workflow,) = yaml_file(CI / "github-actions.yml")
    assert not any("secrets." in str(v) for v in workflow.get("env", {}).values())
    assert workflow["jobs"]["plan"]["environment"] == "reconciler-plan"
    assert workflow["jobs"]["apply"]["environment"] == "reconciler-apply"
    runs = [s["run"] for s in workflow["jobs"]["plan"]["steps"] if "run" in s]
    (plan,) = [c for run in runs for c in shell_commands(run) if c[0] == "plan"]
    assert "--trusted-config" in plan
    (pipeline,) = yaml_file(CI / "gitlab-ci.yml")
    assert pipeline["plan"]["variables"]["PACHYDERM_TOKEN"] == "$PLAN_PACHYDERM_TOKEN"
    assert "--trusted-config" in " ".join(pipeline["plan"]["script"])
    assert "process_mode=oldest_first" in (CI / "gitlab-ci.yml").read_text()


def test_the_gitlab_pipeline_does_the_same() -> None:
    (pipeline,) = yaml_file(CI / "gitlab-ci.yml")
    commands = {
        job: [c for line in pipeline[job]["script"] for c in shell_commands(line)]
        for job in ("validate", "plan", "apply")
    }
    assert commands["plan"][0][0] == "plan" and "--base" in commands["plan"][0]
    assert any("gitlab-mr-comment.py" in line for line in pipeline["plan"]["script"])
    assert commands["apply"][0][:1] == ["apply"]
    for found in commands.values():
        for command in found:
            parses(command)


def test_the_deployment_examples_run_commands_reconciler_accepts() -> None:
    serve_docs = yaml_file(DEPLOY / "kubernetes" / "serve.yaml")
    (deployment,) = [d for d in serve_docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    parses(container["args"])
    assert container["args"][0] == "serve" and "--mode=apply" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (cron,) = yaml_file(DEPLOY / "kubernetes" / "cronjob.yaml")
    (job,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    parses(job["args"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["reconciler"]' in dockerfile
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    parses(json.loads(cmd))


def test_a_command_reconciler_does_not_accept_is_caught() -> None:
    for wrong in (["plan", "--no-such-flag"], ["serve", "--mode", "sometimes"], ["nope"]):
        with pytest.raises(Exception) as caught:
            parses(wrong)
        names = {cls.__name__ for cls in type(caught.value).__mro__}
        assert names & {"UsageError", "AssertionError"}, caught.value


@pytest.fixture
def gitlab() -> Iterator[tuple[str, dict[int, str]]]:
    """A GitLab notes API for one merge request, with one note of someone else's."""
    notes: dict[int, str] = {1: "LGTM"}

    async def listing(request: Request) -> JSONResponse:
        assert request.headers["private-token"] == "glpat-test"
        if request.method == "POST":
            number = max(notes) + 1
            notes[number] = (await request.json())["body"]
            return JSONResponse({"id": number, "body": notes[number]}, status_code=201)
        return JSONResponse([{"id": n, "body": b} for n, b in sorted(notes.items())])

    async def one(request: Request) -> JSONResponse:
        number = int(request.path_params["note"])
        notes[number] = (await request.json())["body"]
        return JSONResponse({"id": number, "body": notes[number]})

    base = "/api/v4/projects/42/merge_requests/7/notes"
    api = Starlette(
        routes=[
            Route(base, listing, methods=["GET", "POST"]),
            Route(base + "/{note}", one, methods=["PUT"]),
        ]
    )
    with served(api) as url:
        yield url, notes


def test_the_gitlab_note_is_created_once_then_updated(
    gitlab: tuple[str, dict[int, str]], tmp_path: Path
) -> None:
    url, notes = gitlab
    env = {
        "CI_API_V4_URL": f"{url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "7",
        "RECONCILER_GITLAB_API_TOKEN": "glpat-test",
        "PATH": "/usr/bin:/bin",
    }
    script = str(CI / "gitlab-mr-comment.py")
    for round_ in ("first plan", "second plan"):
        body = tmp_path / "plan.md"
        body.write_text(f"{COMMENT_MARKER}\n### reconciler plan\n{round_}\n")
        done = subprocess.run(
            [sys.executable, script, str(body)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert notes[1] == "LGTM"
    assert sorted(notes) == [1, 2]
    assert notes[2].endswith("second plan\n")


def test_the_deployment_pods_pass_pod_security_restricted() -> None:
    checked = 0
    for file in sorted((EXAMPLES / "deploy" / "kubernetes").glob("*.yaml")):
        for document in yaml_file(file):
            for name, pod in pod_specs(document):
                assert violations(pod) == [], f"{file.name}: {name}"
                checked += 1
    assert checked == 3
    # The checker itself refuses what "restricted" refuses.
    assert violations({"containers": [{"name": "c"}]})
    assert "c: runAsUser is 0" in violations(
        {"containers": [{"name": "c", "securityContext": {"runAsUser": 0}}]}
    )


def test_only_the_hooks_face_the_outside() -> None:
    documents = yaml_file(EXAMPLES / "deploy" / "kubernetes" / "serve.yaml")
    (ingress,) = [d for d in documents if d["kind"] == "Ingress"]
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/hooks/"]


def test_the_replicas_deployment_holds_together() -> None:
    from ruamel.yaml import YAML

    from reconciler.manifests.serve_config import ServeConfig

    documents = yaml_file(EXAMPLES / "deploy" / "kubernetes" / "replicas.yaml")
    kinds = {d["kind"]: d for d in documents}
    text = kinds["ConfigMap"]["data"]["serve.yaml"]
    config = ServeConfig.model_validate(YAML(typ="safe", pure=True).load(text))
    assert config.coordination is not None and config.sources and config.generators
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert kinds["Service"]["spec"]["selector"] == labels
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--config=/etc/reconciler/serve.yaml" in container["args"]
    paths = [p["path"] for rule in kinds["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/sources/[a-z0-9-]+/hooks/"]
