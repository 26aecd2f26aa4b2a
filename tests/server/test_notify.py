"""Notifications against local receivers that check each request as the real service
documents it: Slack incoming webhooks, Teams workflow webhooks (an Adaptive Card), a
signed JSON webhook, GitHub and GitLab commit statuses. De-duplication, and a failing
receiver that neither fails nor slows a run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reconciler.manifests import ResourceId
from reconciler.manifests.config import Notifications, Sink
from reconciler.manifests.values import Sensitive
from reconciler.providers.base import Health
from reconciler.resource_status import ResourceStatus
from reconciler.retry import Backoff
from reconciler.server.metrics import Metrics
from reconciler.server.notify import Notifier, RunFacts
from tests.pachyderm.helpers import served

SIGNING_KEY = "whsec-0b1c"
GITHUB_TOKEN = "ghp-test-token"
GITLAB_TOKEN = "glpat-test-token"
SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Received:
    calls: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fail: int = 0
    """Answer this many requests with 503 first (a receiver having a bad minute)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def receivers(got: Received) -> Starlette:
    async def record(request: Request, check: Any) -> Response | None:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["x-raw-path"] = request.scope["raw_path"].decode()
        with got.lock:
            if got.fail:
                got.fail -= 1
                return PlainTextResponse("try later", 503)
        if headers.get("content-type") != "application/json":
            got.problems.append(f"{request.url.path}: content-type {headers.get('content-type')}")
        data = json.loads(body)
        problem = check(data, headers, body)
        if problem:
            got.problems.append(f"{request.url.path}: {problem}")
        with got.lock:
            got.calls.append((request.url.path, headers, data))
        return None

    def slack_shape(data: Any, headers: Any, body: bytes) -> str | None:
        # api.slack.com/messaging/webhooks: `text`, and optional Block Kit `blocks`.
        if not isinstance(data.get("text"), str) or not data["text"]:
            return "no text"
        for block in data.get("blocks", []):
            if block.get("type") != "section" or block["text"].get("type") != "mrkdwn":
                return f"unexpected block {block}"
            if len(block["text"]["text"]) > 3000:
                return "a section's text is above 3000 characters"
        return None

    def teams_shape(data: Any, headers: Any, body: bytes) -> str | None:
        # Teams workflows ("post to a channel when a webhook request is received"): a
        # message whose attachments are Adaptive Cards.
        if data.get("type") != "message":
            return "not a message"
        (attachment,) = data["attachments"]
        if attachment["contentType"] != "application/vnd.microsoft.card.adaptive":
            return "not an adaptive card"
        card = attachment["content"]
        if card.get("type") != "AdaptiveCard" or not card.get("version"):
            return "not an AdaptiveCard with a version"
        if not all(item.get("type") == "TextBlock" for item in card["body"]):
            return "a body item that is not a TextBlock"
        return None

    def webhook_shape(data: Any, headers: Any, body: bytes) -> str | None:
        expected = hmac.new(SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
        if headers.get("x-reconciler-signature-256") != f"sha256={expected}":
            return "bad signature"
        if headers.get("x-reconciler-event") != data.get("event"):
            return "event header differs from the body"
        if not headers.get("x-reconciler-delivery"):
            return "no delivery id"
        return None

    def github_shape(data: Any, headers: Any, body: bytes) -> str | None:
        # docs.github.com, "Create a commit status".
        if headers.get("authorization") != f"Bearer {GITHUB_TOKEN}":
            return "bad authorization"
        if headers.get("accept") != "application/vnd.github+json":
            return "bad accept"
        if data.get("state") not in ("error", "failure", "pending", "success"):
            return f"bad state {data.get('state')}"
        if len(data.get("description", "")) > 140:
            return "description above 140 characters"
        return None

    def gitlab_shape(data: Any, headers: Any, body: bytes) -> str | None:
        # docs.gitlab.com, "Set the pipeline status of a commit".
        if headers.get("x-raw-path") != f"/api/v4/projects/acme%2Fmanifests/statuses/{SHA}":
            return f"not the URL-encoded project path: {headers.get('x-raw-path')}"
        if headers.get("private-token") != GITLAB_TOKEN:
            return "bad token"
        if data.get("state") not in ("pending", "running", "success", "failed", "canceled"):
            return f"bad state {data.get('state')}"
        return None

    def route(path: str, check: Any, answer: Response) -> Route:
        async def endpoint(request: Request) -> Response:
            refused = await record(request, check)
            return refused if refused is not None else answer

        return Route(path, endpoint, methods=["POST"])

    return Starlette(
        routes=[
            route("/slack/T1/B1/x", slack_shape, PlainTextResponse("ok")),
            route("/teams", teams_shape, Response(status_code=202)),
            route("/hook", webhook_shape, JSONResponse({"ok": True})),
            route(f"/repos/acme/manifests/statuses/{SHA}", github_shape, JSONResponse({}, 201)),
            # The project's path is URL-encoded in the URL (GitLab: "ID or URL-encoded
            # path of the project"); gitlab_shape checks the raw path.
            route(
                "/api/v4/projects/{project:path}/statuses/{sha}",
                gitlab_shape,
                JSONResponse({}, 201),
            ),
        ]
    )


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    got = Received()
    with served(receivers(got)) as url:
        yield url, got


def config(url: str, events: list[str] | None = None) -> Notifications:
    extra: dict[str, Any] = {"events": events} if events else {}
    return Notifications(
        link="https://reconciler.example.com",
        sinks=[
            Sink(type="slack", url=Sensitive("${env:SLACK}", f"{url}/slack/T1/B1/x"), **extra),
            Sink(type="teams", url=f"{url}/teams", **extra),
            Sink(
                type="webhook",
                url=f"{url}/hook",
                secret=Sensitive("${env:K}", SIGNING_KEY),
                **extra,
            ),
            Sink(
                type="github",
                url=url,
                token=Sensitive("${env:GH}", GITHUB_TOKEN),
                repository="acme/manifests",
            ),
            Sink(
                type="gitlab",
                url=url,
                token=Sensitive("${env:GL}", GITLAB_TOKEN),
                repository="acme/manifests",
            ),
        ],
    )


FAST = Backoff(attempts=3, initial=0.01, maximum=0.05)


def facts(number: int, result: str, **more: Any) -> RunFacts:
    values: dict[str, Any] = {
        "error": None,
        "revision": SHA,
        "refusals": (),
        "drifted": {"pachyderm": []},
        "applies": True,
    }
    values.update(more)
    return RunFacts(number, result, **values)


def degraded(name: str, reason: str) -> ResourceStatus:
    return ResourceStatus(
        ResourceId("pachyderm", "Pipeline", f"vision/{name}"), "synced", Health("degraded", reason)
    )


async def run_notifier(
    url: str, steps: list[tuple[RunFacts, list[ResourceStatus] | None]]
) -> Metrics:
    metrics = Metrics()
    notifier = Notifier(metrics, "git@example.com:acme/manifests", backoff=FAST)
    notifier.config = config(url)
    for run, statuses in steps:
        notifier.started(run.number, run.revision, run.applies)
        notifier.finished(run, statuses)
        await notifier.drain()
    await notifier.aclose()
    return metrics


def by_path(got: Received, fragment: str) -> list[Any]:
    return [data for path, _, data in got.calls if fragment in path]


def test_each_sink_gets_what_its_service_documents(receiver: tuple[str, Received]) -> None:
    url, got = receiver
    crash = degraded("edges", 'back-off pulling image "bad:1" & <friends>')
    asyncio.run(
        run_notifier(
            url,
            [
                (facts(1, "failed", error="apply failed: pachyderm:Pipeline/vision/edges"), None),
                (facts(2, "succeeded"), [crash]),
            ],
        )
    )
    assert got.problems == []
    slack = by_path(got, "/slack/")
    assert [m["text"] for m in slack] == [
        "reconciler run #1 failed on git@example.com:acme/manifests",
        "reconciler run #2 succeeded on git@example.com:acme/manifests after a failure",
        "1 resource(s) degraded on target pachyderm",
    ]
    shown = slack[2]["blocks"][0]["text"]["text"]
    assert "&amp; &lt;friends&gt;" in shown  # mrkdwn control characters escaped
    assert "<https://reconciler.example.com/runs/2|Open run #2>" in shown
    assert len(by_path(got, "/teams")) == 3 and len(by_path(got, "/hook")) == 3
    assert [m["event"] for m in by_path(got, "/hook")] == [
        "run-failed",
        "run-recovered",
        "degraded",
    ]
    github = by_path(got, "/repos/")
    assert [s["state"] for s in github] == ["pending", "failure", "pending", "success"]
    assert github[1]["target_url"] == "https://reconciler.example.com/runs/1"
    assert all(s["context"] == "reconciler" for s in github)
    assert [s["state"] for s in by_path(got, "/api/v4/")] == [
        "running",
        "failed",
        "running",
        "success",
    ]


def test_the_same_news_is_told_once(receiver: tuple[str, Received]) -> None:
    url, got = receiver
    drift = {"pachyderm": ["pachyderm:Pipeline/vision/edges"]}
    crash = degraded("edges", "ImagePullBackOff")
    steps: list[tuple[RunFacts, list[ResourceStatus] | None]] = [
        (facts(1, "drift", drifted=drift, applies=False), [crash]),
        (facts(2, "drift", drifted=drift, applies=False), [crash]),  # the same: nothing
        (facts(3, "drift", drifted=drift, applies=False), [crash]),
        (facts(4, "failed", error="boom", applies=False), None),
        (facts(5, "failed", error="boom", applies=False), None),  # the same error: nothing
        (facts(6, "failed", error="another", applies=False), None),
        (facts(7, "succeeded", applies=False), []),
        (facts(8, "drift", drifted=drift, applies=False), [crash]),  # came back: told again
    ]
    asyncio.run(run_notifier(url, steps))
    assert [(m["event"], m["run"]) for m in by_path(got, "/hook")] == [
        ("drift", 1),
        ("degraded", 1),
        ("run-failed", 4),
        ("run-failed", 6),
        ("run-recovered", 7),
        ("drift", 8),
        ("degraded", 8),
    ]
    assert by_path(got, "/repos/") == []  # plan-only runs set no commit status


def test_a_receiver_that_fails_a_while_is_retried(receiver: tuple[str, Received]) -> None:
    url, got = receiver
    got.fail = 2
    metrics = asyncio.run(run_notifier(url, [(facts(1, "failed", error="x", applies=False), None)]))
    assert len(by_path(got, "/hook")) == 1 and len(by_path(got, "/slack/")) == 1
    assert (
        'reconciler_notifications_total{outcome="sent",sink="webhook"} 1.0'
        in metrics.render().decode()
    )


def test_a_dead_receiver_neither_fails_nor_slows_the_run() -> None:
    async def scenario() -> tuple[float, str]:
        metrics = Metrics()
        notifier = Notifier(metrics, "src", backoff=Backoff(attempts=3, initial=0.2, maximum=0.2))
        notifier.config = Notifications(
            sinks=[Sink(type="webhook", url="http://127.0.0.1:9/nothing", secret="k")]
        )
        started = time.monotonic()
        notifier.finished(facts(1, "failed", error="x", applies=False), None)
        returned = time.monotonic() - started
        await notifier.drain(10)
        await notifier.aclose()
        return returned, metrics.render().decode()

    returned, rendered = asyncio.run(scenario())
    assert returned < 0.2  # queued, not sent while the run waits
    assert 'reconciler_notifications_total{outcome="failed",sink="webhook"} 1.0' in rendered


def test_a_sink_that_is_not_complete_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        Sink(type="webhook", url="https://x.example.com")
    with pytest.raises(ValueError, match="token and a repository"):
        Sink(type="github", token="t")
