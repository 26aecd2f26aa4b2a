"""End to end: `reconciler serve` in its own process, following a git remote, applying to
the sandbox over HTTP; a signed push makes it fetch and apply the new commit, seen in
/status and /metrics; SIGTERM lets the run in flight finish."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.insights import InsightsOptions
from tests.gitrepo import git
from tests.pachyderm.helpers import free_port, served
from tests.server.serving import quickstart_repo, status, up, wait_for
from tests.test_resilience import CLEAN_ENV, stats

SECRET = "e2e-secret"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    options = SandboxOptions(latency_ms=20, insights=InsightsOptions(deploy_delay=0.05))
    with served(create_app(tmp_path / "sandbox.db", options)) as url:
        yield url


def push_event(base: str, sha: str, delivery: str) -> httpx.Response:
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{base}/hooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
        },
        timeout=5,
    )


def test_a_signed_push_is_fetched_and_applied_and_sigterm_waits_for_the_run(
    tmp_path: Path, sandbox: str
) -> None:
    repo = quickstart_repo(tmp_path, sandbox)
    db = tmp_path / "sandbox.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **CLEAN_ENV,
        "RECONCILER_GITHUB_SECRET": SECRET,
        "RECONCILER_CACHE": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "reconciler", "serve", repo.url, "--ref", "main"]
    command += ["--mode", "apply", "--port", str(port), "--interval", "1h", "--concurrency", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for("the server", lambda: up(base) or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        first = repo.head()
        wait_for(
            "the startup run", lambda: (status(base)["last_run"] or {}).get("result") is not None
        )
        assert status(base)["last_run"]["revision"] == first
        assert status(base)["last_run"]["result"] == "succeeded", status(base)
        creates = stats(db)["mutating"]
        assert creates > 0

        repo.replace("manifests/pachyderm.yaml", "alpine:3.20", "alpine:3.21")
        second = repo.commit("newer alpine")
        repo.push()
        answer = push_event(base, second, "delivery-1")
        assert answer.status_code == 202
        wait_for("the pushed commit", lambda: status(base)["last_run"]["revision"] == second)
        after = status(base)
        assert after["last_run"]["trigger"] == "github"
        assert after["last_run"]["result"] == "succeeded"
        assert after["last_run"]["planned"] == {"patch": 1}
        assert after["targets"]["pachyderm"] == {
            **after["targets"]["pachyderm"],
            "revision": second,
            "result": "succeeded",
            "drift": 0,
        }
        calls = stats(db)["calls"]
        assert calls.get("POST /api/pps_v2.API/CreatePipelineV2", 0) == 4  # 3 creates, 1 update
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'reconciler_runs_total{result="succeeded",trigger="github"} 1.0' in metrics
        assert 'reconciler_runs_total{result="succeeded",trigger="startup"} 1.0' in metrics
        assert (
            'reconciler_actions_total{action="patch",result="ok",target="pachyderm"} 1.0' in metrics
        )
        assert 'reconciler_drifted_resources{target="pachyderm"} 0.0' in metrics

        # A slow run (ten repos, one call at a time): SIGTERM while it is in flight.
        for number in range(10):
            repo.write(
                f"manifests/extra-{number}.yaml",
                f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: extra{number},"
                " project: vision}\n",
            )
        third = repo.commit("ten more repos")
        repo.push()
        assert push_event(base, third, "delivery-2").status_code == 202
        wait_for("the run to start", lambda: status(base)["running"] is not None)
        process.send_signal(signal.SIGTERM)
        _, logs = process.communicate(timeout=60)
        assert process.returncode == 0, logs
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    finished = [line for line in lines if line["message"] == "run finished"]
    assert finished[-1]["revision"] == third
    assert finished[-1]["result"] == "succeeded"
    assert finished[-1]["planned"] == {"create": 10}
    # The run was in flight at SIGTERM: it finished after shutdown began, before the end.
    last_finished = len(messages) - 1 - messages[::-1].index("run finished")
    assert messages.index("shutting down") < last_finished < messages.index("stopped")
    assert len(lines) == len(logs.splitlines())  # every line is structured
    assert SECRET not in logs


def test_serve_with_its_port_taken_fails_before_any_run(tmp_path: Path, sandbox: str) -> None:
    repo = quickstart_repo(tmp_path, sandbox)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        env = {**CLEAN_ENV, "RECONCILER_CACHE": str(tmp_path / "cache")}
        command = [sys.executable, "-m", "reconciler", "serve", repo.url, "--mode", "apply"]
        done = subprocess.run(
            [*command, "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        taken.close()
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert stats(tmp_path / "sandbox.db")["mutating"] == 0


def test_without_ref_serve_follows_the_remotes_default_branch(tmp_path: Path, sandbox: str) -> None:
    repo = quickstart_repo(tmp_path, sandbox)
    git(repo.bare, "branch", "-m", "main", "trunk")
    git(repo.bare, "symbolic-ref", "HEAD", "refs/heads/trunk")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**CLEAN_ENV, "RECONCILER_GITHUB_SECRET": SECRET, "RECONCILER_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "reconciler", "serve", repo.url, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--interval", "1h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for("the server", lambda: up(base) or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        assert status(base)["branch"] == "trunk"
        wait_for("the startup run", lambda: status(base)["last_run"] is not None)
        body = json.dumps({"ref": "refs/heads/trunk", "after": repo.head()}).encode()
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "trunk-1",
            "X-Hub-Signature-256": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        }
        answer = httpx.post(f"{base}/hooks/github", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202 and answer.json().get("queued") is True, answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_health_answers_while_a_run_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning runs off the event loop: /healthz answers while a long plan is made."""
    from starlette.testclient import TestClient

    from reconciler import compose, reconcile
    from reconciler import plan as plan_module
    from reconciler.server import ServeOptions
    from reconciler.server import create_app as serve_app
    from reconciler.server.schedule import Every

    (tmp_path / "project.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: slow}\n"
    )
    planning = threading.Event()
    real = plan_module.make_plan

    def slow_plan(*args: Any, **kwargs: Any) -> Any:
        planning.set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # CPU-bound, as a 10,000-resource plan is
            sum(range(1000))
        return real(*args, **kwargs)

    monkeypatch.setattr(reconcile, "make_plan", slow_plan)
    options = ServeOptions(source=str(tmp_path), schedule=Every(3600))
    with TestClient(serve_app(options, compose.Connector())) as client:
        assert planning.wait(20)
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 1.0
