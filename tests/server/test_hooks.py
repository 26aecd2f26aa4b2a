"""The webhook endpoints of `reconciler serve`: authentication, size, replay, events."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from reconciler import compose
from reconciler.server import ServeOptions, create_app
from reconciler.server.app import Server
from reconciler.server.schedule import Every

SECRET = "gh-webhook-secret"
GITLAB = "gitlab-token"
BEARER = "generic-token"
PROJECT = "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: hooks}\n"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "project.yaml").write_text(PROJECT)
    options = ServeOptions(
        source=str(tmp_path),
        mode="apply",
        schedule=Every(3600),
        github_secret=SECRET,
        gitlab_token=GITLAB,
        generic_token=BEARER,
    )
    with TestClient(create_app(options, compose.Connector())) as test_client:
        wait_runs(test_client, 1)  # the startup run
        yield test_client


def server(client: TestClient) -> Server:
    found: Server = client.app.state.server  # type: ignore[attr-defined]
    return found


def last_revision(client: TestClient) -> str | None:
    last = server(client).runner.last
    assert last is not None
    return last.trigger.revision


def wait_runs(client: TestClient, count: int) -> None:
    deadline = time.monotonic() + 20
    while server(client).runner.count < count or server(client).worker.running is not None:
        assert time.monotonic() < deadline, "the run did not happen"
        time.sleep(0.02)


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(
    client: TestClient, event: str, payload: object, delivery: str, signature: str | None = None
) -> tuple[int, dict[str, object]]:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature if signature is not None else signed(body),
        "Content-Type": "application/json",
    }
    answer = client.post("/hooks/github", content=body, headers=headers)
    return answer.status_code, answer.json()


PUSH = {"ref": "refs/heads/main", "after": "a" * 40}


def test_github_ping_push_and_other_events(client: TestClient) -> None:
    assert github(client, "ping", {"zen": "hi"}, "d1") == (200, {"pong": True})
    assert github(client, "push", PUSH, "d2") == (202, {"queued": True, "revision": "a" * 40})
    wait_runs(client, 2)
    status, body = github(client, "push", {**PUSH, "ref": "refs/heads/feature"}, "d3")
    assert status == 202
    assert body == {"ignored": "push to refs/heads/feature, not to the tracked branch main"}
    status, body = github(client, "issues", {"action": "opened"}, "d4")
    assert (status, body) == (202, {"ignored": "event 'issues' does not trigger runs"})
    time.sleep(0.2)
    assert server(client).runner.count == 2  # only the push to main ran
    assert last_revision(client) == "a" * 40


def test_github_bad_or_missing_signatures_are_refused(client: TestClient) -> None:
    assert github(client, "push", PUSH, "x1", signature=signed(b"other body"))[0] == 401
    assert github(client, "push", PUSH, "x2", signature=signed(b"", "wrong secret"))[0] == 401
    assert github(client, "push", PUSH, "x3", signature="")[0] == 401
    assert github(client, "push", PUSH, "x4", signature="sha1=" + "0" * 40)[0] == 401
    time.sleep(0.2)
    assert server(client).runner.count == 1
    metrics = client.get("/metrics").text
    assert 'reconciler_webhooks_total{hook="github",outcome="401"} 4.0' in metrics


def test_a_replayed_delivery_is_ignored_but_a_forgery_cannot_burn_its_id(
    client: TestClient,
) -> None:
    assert github(client, "push", PUSH, "same", signature=signed(b"forged"))[0] == 401
    assert github(client, "push", PUSH, "same")[0] == 202  # the real one still counts
    wait_runs(client, 2)
    status, body = github(client, "push", PUSH, "same")
    assert status == 200
    assert body == {"ignored": "delivery same was already received"}
    time.sleep(0.2)
    assert server(client).runner.count == 2


def test_bodies_above_one_mebibyte_are_refused(client: TestClient) -> None:
    big = b"{" + b" " * (1 << 20) + b"}"
    answer = client.post("/hooks/github", content=big, headers={"X-Hub-Signature-256": signed(big)})
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(17):
            yield b" " * 65536

    answer = client.post(
        "/hooks/generic", content=chunks(), headers={"Authorization": f"Bearer {BEARER}"}
    )
    assert answer.status_code == 413
    assert server(client).runner.count == 1


def test_gitlab_token_and_push_hooks(client: TestClient) -> None:
    payload = json.dumps({"ref": "refs/heads/main", "checkout_sha": "b" * 40})

    def post(token: str, event: str = "Push Hook", uuid: str = "u1") -> int:
        headers = {"X-Gitlab-Token": token, "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": uuid}
        answer = client.post("/hooks/gitlab", content=payload, headers=headers)
        return int(answer.status_code)

    assert post("wrong") == 401
    assert post(GITLAB, "Merge Request Hook", "u0") == 202
    assert post(GITLAB) == 202
    wait_runs(client, 2)
    assert last_revision(client) == "b" * 40
    assert post(GITLAB) == 200  # the same delivery again


def test_generic_hook_takes_a_bearer_token(client: TestClient) -> None:
    url = "/hooks/generic"
    assert client.post(url).status_code == 401
    assert client.post(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.post(url, headers={"Authorization": f"Bearer {BEARER}"}, json={"revision": "c"})
    assert (answer.status_code, answer.json()) == (202, {"queued": True, "revision": "c"})
    wait_runs(client, 2)


def test_a_hook_without_its_secret_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text(PROJECT)
    options = ServeOptions(source=str(tmp_path), schedule=Every(3600))
    with TestClient(create_app(options, compose.Connector())) as plain:
        for hook, variable in (
            ("github", "RECONCILER_GITHUB_SECRET"),
            ("gitlab", "RECONCILER_GITLAB_TOKEN"),
            ("generic", "RECONCILER_WEBHOOK_TOKEN"),
        ):
            answer = plain.post(f"/hooks/{hook}", content=b"{}")
            assert answer.status_code == 404
            assert variable in answer.json()["error"]


def test_health_readiness_and_status(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/readyz").status_code == 200
    status = client.get("/status").json()
    assert status["mode"] == "apply"
    assert status["last_run"]["result"] == "succeeded"
    assert status["targets"]["pachyderm"]["drift"] == 0
    assert status["targets"]["pachyderm"]["result"] == "succeeded"
    assert 3240 <= status["next_scheduled_in_seconds"] <= 3960
    text = json.dumps(status)
    for secret in (SECRET, GITLAB, BEARER):
        assert secret not in text


# --- safety (issue: serve) ------------------------------------------------------------


def test_a_form_encoded_github_delivery_is_read(client: TestClient) -> None:
    """GitHub sends `payload=<json>` when the webhook's content type is form-encoded;
    the signature covers the form body."""
    body = urlencode({"payload": json.dumps({**PUSH, "after": "f" * 40})}).encode()
    answer = client.post(
        "/hooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "form-1",
            "X-Hub-Signature-256": signed(body),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert answer.status_code == 202, answer.text
    wait_runs(client, 2)
    assert last_revision(client) == "f" * 40


def test_a_non_ascii_signature_or_token_is_refused_not_a_crash(client: TestClient) -> None:
    body = json.dumps(PUSH).encode()
    for signature in ("sha256=é" + "0" * 63, "sha256=☃"):
        answer = client.post(
            "/hooks/github",
            content=body,
            headers={
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": signature.encode(),
            },
        )
        assert answer.status_code == 401
    answer = client.post(
        "/hooks/gitlab",
        content=b"{}",
        headers={"X-Gitlab-Token": "tökén".encode(), "X-Gitlab-Event": "x"},
    )
    assert answer.status_code == 401


def test_a_push_that_deletes_the_tracked_branch_runs_nothing(client: TestClient) -> None:
    before = server(client).runner.count
    status, answer = github(
        client, "push", {"ref": "refs/heads/main", "after": "0" * 40, "deleted": True}, "del-1"
    )
    assert status == 202 and "deleted the tracked branch" in str(answer["ignored"])
    time.sleep(0.2)
    assert server(client).runner.count == before


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe"],
    ids=["bad", "deep", "binary"],
)
def test_a_signed_body_that_is_not_json_is_a_bad_request(client: TestClient, body: bytes) -> None:
    """Authentic but unreadable (the secret leaked, or a broken sender): 400, no run."""
    answer = client.post(
        "/hooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": f"odd-{len(body)}",
            "X-Hub-Signature-256": signed(body),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 400, answer.text
    assert "neither JSON" in answer.json()["error"]
