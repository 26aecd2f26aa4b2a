"""Suspend, resume, sync and rollback end to end: a git source served from a local bare
repository, a real `serve` process, the sandbox over HTTP, the command line as a person
types it. And notifications configured in reconciler.yaml reaching a receiver."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.insights import InsightsOptions
from tests.conftest import EXAMPLES, run_cli
from tests.pachyderm.helpers import served
from tests.server.serving import finished, quickstart_repo, serving, status, wait_for
from tests.test_resilience import stats

TOKEN = "automation-token"
IMAGE = "image: v4tech/imagemagick"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "sandbox.db"
    with served(create_app(db, SandboxOptions(insights=InsightsOptions(deploy_delay=0.05)))) as url:
        yield url, db


def montage_image(db: Path) -> str:
    from reconciler.sandbox.pachyderm import Pachd
    from reconciler.sandbox.store import Store

    store = Store(db)
    try:
        pipelines = Pachd(store).ListPipeline({})
    finally:
        store.close()
    (montage,) = [p for p in pipelines if p["pipeline"]["name"] == "montage"]
    return str(json.loads(montage["userSpecJson"])["transform"]["image"])


def sync(base: str) -> int:
    return run_cli("sync", "--server", base)


def test_suspend_holds_serve_back_and_sync_and_resume_let_it_go(
    tmp_path: Path, sandbox: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    url, db = sandbox
    repo = quickstart_repo(tmp_path, url)
    monkeypatch.setenv("RECONCILER_UI_TOKEN", TOKEN)
    with serving(repo.url, tmp_path, ["--ref", "main"], {"RECONCILER_UI_TOKEN": TOKEN}) as base:
        config = repo.work  # a checkout of the repository: its reconciler.yaml
        assert (
            run_cli("suspend", str(config), "--target", "pachyderm", "--reason", "incident 7") == 0
        )
        assert "suspended by" in capsys.readouterr().out

        repo.replace("manifests/pachyderm.yaml", IMAGE, IMAGE + ":7")
        repo.commit("a new montage image")
        repo.push()
        assert sync(base) == 0
        assert "a run was queued" in capsys.readouterr().out
        wait_for("the held run", lambda: finished(base, 2))
        last = status(base)["last_run"]
        assert (last["result"], last["suspended_targets"]) == ("drift", ["pachyderm"])
        assert montage_image(db) == "v4tech/imagemagick"  # held back: nothing applied
        assert status(base)["suspended"]["pachyderm"]["reason"] == "incident 7"

        assert run_cli("status", str(config)) == 0
        shown = capsys.readouterr().out
        assert "automation suspended by" in shown and "incident 7" in shown

        assert run_cli("resume", str(config)) == 0
        assert "resumed target 'pachyderm'" in capsys.readouterr().out
        assert sync(base) == 0
        wait_for("the applying run", lambda: finished(base, 3))
        assert status(base)["last_run"]["result"] == "succeeded"
        assert montage_image(db) == "v4tech/imagemagick:7"

        # Without the token, serve refuses; a wrong address is said plainly.
        monkeypatch.setenv("RECONCILER_UI_TOKEN", "wrong")
        assert sync(base) == 1
        assert "refused the sync (403)" in capsys.readouterr().err
        monkeypatch.delenv("RECONCILER_UI_TOKEN")
        monkeypatch.delenv("RECONCILER_WEBHOOK_TOKEN", raising=False)
        assert sync(base) == 3


def test_rollback_applies_the_revision_before_and_suspends_serve(
    tmp_path: Path, sandbox: tuple[str, Path], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, db = sandbox
    repo = quickstart_repo(tmp_path, url)
    first = repo.head()
    monkeypatch.setenv("RECONCILER_UI_TOKEN", TOKEN)
    monkeypatch.setenv("RECONCILER_CACHE", str(tmp_path / "cli-cache"))
    with serving(repo.url, tmp_path, ["--ref", "main"], {"RECONCILER_UI_TOKEN": TOKEN}) as base:
        repo.replace("manifests/pachyderm.yaml", IMAGE, IMAGE + ":broken")
        repo.commit("a bad image")
        repo.push()
        assert sync(base) == 0
        wait_for("the bad commit applied", lambda: finished(base, 2))
        assert montage_image(db) == "v4tech/imagemagick:broken"
        capsys.readouterr()

        assert run_cli("rollback", repo.url, "--ref", "main", "--yes") == 0
        out = capsys.readouterr().out
        assert f"rolling back {repo.url} to {first}" in out
        assert "automation suspended on every target" in out
        assert montage_image(db) == "v4tech/imagemagick"

        # The next run plans the branch again, and applies none of it.
        before = stats(db)["mutating"]
        assert sync(base) == 0
        wait_for("the next run", lambda: finished(base, 3))
        last = status(base)["last_run"]
        assert last["result"] == "drift" and last["suspended_targets"] == ["insights", "pachyderm"]
        assert stats(db)["mutating"] == before
        assert montage_image(db) == "v4tech/imagemagick"
        assert "rolled back to" in status(base)["suspended"]["*"]["reason"]


def test_rollback_needs_an_earlier_revision(
    tmp_path: Path, sandbox: tuple[str, Path], capsys: Any
) -> None:
    url, _ = sandbox
    repo = quickstart_repo(tmp_path, url)
    assert run_cli("apply", str(repo.work), "--yes") == 0
    capsys.readouterr()
    assert run_cli("rollback", str(repo.work), "--yes") == 3
    assert "there is no earlier revision" in capsys.readouterr().err
    assert run_cli("rollback", str(repo.work), "--to", "no-such-ref", "--yes") == 3
    assert "'no-such-ref' is not a commit" in capsys.readouterr().err


def test_notifications_from_reconciler_yaml_reach_their_receiver(
    tmp_path: Path, sandbox: tuple[str, Path]
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append({"event": request.headers["x-reconciler-event"], **(await request.json())})
        return JSONResponse({})

    url, _ = sandbox
    with served(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        sinks = (
            "notifications:\n  link: https://reconciler.example.com\n  sinks:\n"
            f"    - {{type: webhook, url: '{receiver}/hook', secret: '${{env:HOOK_KEY}}'}}\n"
        )
        repo = quickstart_repo(tmp_path, url, config=sinks)
        env = {"RECONCILER_UI_TOKEN": TOKEN, "HOOK_KEY": "k"}
        with serving(repo.url, tmp_path, ["--ref", "main"], env) as base:
            repo.write("manifests/broken.yaml", "kind: Nonsense\n")
            repo.commit("an invalid manifest")
            repo.push()
            answer = httpx.post(
                f"{base}/actions/sync", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
            )
            assert answer.status_code == 202
            wait_for("the invalid run", lambda: finished(base, 2))
            wait_for("the notification", lambda: bool(received))
    (notice,) = received
    assert notice["event"] == "run-failed" and notice["run"] == 2
    assert notice["link"] == "https://reconciler.example.com/runs/2"
    assert "broken.yaml" in notice["lines"][0]


def test_metrics_say_sync_health_suspension_and_unknown_drift(
    tmp_path: Path, sandbox: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = sandbox
    repo = quickstart_repo(tmp_path, url)
    monkeypatch.setenv("RECONCILER_UI_TOKEN", TOKEN)
    with serving(repo.url, tmp_path, ["--ref", "main"], {"RECONCILER_UI_TOKEN": TOKEN}) as base:
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert (
            'reconciler_resources{health="healthy",sync="synced",target="pachyderm"} 6.0' in metrics
        )
        assert 'reconciler_target_runs_total{result="succeeded",target="insights"} 1.0' in metrics
        assert 'reconciler_drift_known{target="pachyderm"} 1.0' in metrics
        assert 'reconciler_suspended{target="pachyderm"} 0.0' in metrics
        assert 'reconciler_lock_held_seconds{target="pachyderm"} 0.0' in metrics
        assert re.search(r'reconciler_build_info\{python="[\d.]+",version="[^"]+"\} 1.0', metrics)
        assert "reconciler_resource_info{" not in metrics  # all well: nothing to name

        config = repo.work  # a checkout of the repository: its reconciler.yaml
        assert run_cli("suspend", str(config), "--target", "pachyderm") == 0
        repo.replace("manifests/pachyderm.yaml", IMAGE, IMAGE + ":7")
        repo.commit("held back")
        repo.push()
        assert sync(base) == 0
        wait_for("the held run", lambda: finished(base, 2))
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'reconciler_suspended{target="pachyderm"} 1.0' in metrics
        assert 'reconciler_drifted_resources{target="pachyderm"} 1.0' in metrics
        assert (
            'reconciler_resource_info{health="healthy",kind="Pipeline",name="vision/montage",'
            'sync="out_of_sync",target="pachyderm"} 1.0'
        ) in metrics

        repo.write("manifests/broken.yaml", "kind: Nonsense\n")
        repo.commit("invalid")
        repo.push()
        assert sync(base) == 0
        wait_for("the invalid run", lambda: finished(base, 3))
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        # An invalid commit tells nothing of drift: unknown, not "no drift".
        assert 'reconciler_drifted_resources{target="pachyderm"} NaN' in metrics
        assert 'reconciler_drift_known{target="pachyderm"} 0.0' in metrics


def test_the_alerts_name_metrics_serve_exports() -> None:
    from reconciler.server.metrics import Metrics
    from tests.test_examples_ci import yaml_file

    exported = {
        sample.name for family in Metrics().registry.collect() for sample in family.samples
    } | {family.name for family in Metrics().registry.collect()}
    documents = yaml_file(EXAMPLES / "deploy" / "kubernetes" / "monitoring.yaml")
    (rules,) = [d for d in documents if d["kind"] == "PrometheusRule"]
    (monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    alerts = [rule for group in rules["spec"]["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "ReconcilerDown",
        "ReconcilerRunsFailing",
        "ReconcilerDrift",
        "ReconcilerResourcesDegraded",
        "ReconcilerLockHeldTooLong",
    }
    for alert in alerts:
        for name in re.findall(r"\breconciler_[a-z_]+", alert["expr"]):
            assert (
                name in exported
                or f"{name}_total" in exported
                or name.removesuffix("_total") in exported
            ), f"{alert['alert']} names {name}, which serve does not export"
