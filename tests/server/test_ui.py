"""The web UI's rules, page by page, without a browser: who may read, who may act, CSRF,
redirects that stay on the server, filters and pages over 10,000 resources, and the
graph's limits. (tests/server/test_ui_browser.py drives it in chromium.)"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from reconciler.diff import Change
from reconciler.manifests import ResourceId
from reconciler.manifests.values import REDACTED
from reconciler.providers.base import Health
from reconciler.resource_status import ResourceStatus
from reconciler.server import ServeOptions, create_app
from reconciler.server.hooks import Trigger
from reconciler.server.runs import (
    HISTORY,
    HISTORY_LINES,
    PLAN_KEPT,
    SEEN_KEPT,
    SEEN_LINES,
    RunReport,
    Snapshot,
)
from reconciler.server.sessions import COOKIE, Sessions
from reconciler.state import SqliteStore

TOKEN = "t0ken-for-the-ui"


def statuses(count: int) -> list[ResourceStatus]:
    found = []
    for index in range(count):
        rid = ResourceId("pachyderm", "Pipeline", f"p/{index:05d}")
        sync = "out_of_sync" if index % 100 == 7 else "synced"
        health = Health("degraded", "CrashLoopBackOff") if index % 1000 == 3 else Health("healthy")
        uses = (ResourceId("pachyderm", "Pipeline", f"p/{index - 1:05d}"),) if index else ()
        used_by = (ResourceId("pachyderm", "Pipeline", f"p/{index + 1:05d}"),)
        found.append(
            ResourceStatus(rid, sync, health, uses=uses, used_by=used_by[: int(index < count - 1)])  # type: ignore[arg-type]
        )
    return found


def client(tmp_path: Path, count: int = 0, *, public: bool = False) -> TestClient:
    options = ServeOptions(source=str(tmp_path), ui_token=TOKEN, ui_public=public)
    app = create_app(options, lambda *args: None)  # type: ignore[arg-type]
    runner = app.state.server.runner
    runner.resources = Snapshot(1, time.time(), tuple(statuses(count)))
    runner.targets = ("pachyderm",)
    runner.state = (f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def login(ui: TestClient) -> str:
    answer = ui.post("/login", data={"token": TOKEN, "next": "/"})
    assert answer.status_code == 303
    page = ui.get("/").text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


def test_pages_need_a_session_unless_public(tmp_path: Path) -> None:
    ui = client(tmp_path, 10)
    for page in ("/", "/resources", "/runs", "/graph", "/resources/pachyderm:Pipeline/p/00001"):
        answer = ui.get(page)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert client(tmp_path, 10, public=True).get("/resources").status_code == 200


def test_a_wrong_token_is_refused_and_the_cookie_is_strict(tmp_path: Path) -> None:
    ui = client(tmp_path)
    refused = ui.post("/login", data={"token": "nope"})
    assert refused.status_code == 401 and "That is not the UI token." in refused.text
    answer = ui.post("/login", data={"token": TOKEN, "next": "/runs"})
    assert answer.headers["location"] == "/runs"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert TOKEN not in answer.headers["set-cookie"]


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/", "/\\evil"])
def test_login_redirects_stay_on_this_server(tmp_path: Path, target: str) -> None:
    answer = client(tmp_path).post("/login", data={"token": TOKEN, "next": target})
    assert answer.headers["location"] == "/"


def test_actions_need_the_sessions_csrf_token_or_a_bearer_token(tmp_path: Path) -> None:
    ui = client(tmp_path)
    csrf = login(ui)
    # Logged in, but a form from elsewhere carries no (or a wrong) CSRF token.
    assert ui.post("/actions/suspend", data={"reason": "x"}).status_code == 403
    assert ui.post("/actions/suspend", data={"csrf": "0" * 64}).status_code == 403
    answer = ui.post("/actions/suspend", data={"csrf": csrf, "reason": "incident", "next": "/"})
    assert answer.status_code == 303
    assert "automation+suspended+on+every+target" in answer.headers["location"]
    store = SqliteStore(tmp_path / "state.db")
    try:
        (suspension,) = store.suspensions().values()
        assert suspension.reason == "incident" and suspension.by.startswith("ui from ")
    finally:
        store.close()
    # A program: the bearer token, no cookie, no CSRF; the answer is JSON.
    bare = client(tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = bare.post("/actions/resume", headers=headers)
    assert (
        answer.status_code == 202 and answer.json()["done"] == "automation resumed on every target"
    )
    assert bare.post("/actions/sync", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        bare.post("/actions/suspend", headers=headers, data={"target": "nowhere"}).status_code
        == 400
    )
    assert bare.post("/actions/explode", headers=headers).status_code == 404


def test_a_session_ends(tmp_path: Path) -> None:
    sessions = Sessions(TOKEN)
    cookie = sessions.login(TOKEN, now=1000.0)
    assert cookie is not None

    class Fake:
        def __init__(self, value: str) -> None:
            self.cookies = {COOKIE: value}

    assert sessions.session(Fake(cookie), now=1001.0) is not None  # type: ignore[arg-type]
    assert sessions.session(Fake(cookie), now=1000.0 + 13 * 3600) is None  # type: ignore[arg-type]
    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    assert sessions.session(Fake(forged), now=1001.0) is None  # type: ignore[arg-type]
    assert Sessions(None).login("") is None  # no token configured: nobody logs in


def test_ten_thousand_resources_filtered_and_paged(tmp_path: Path) -> None:
    ui = client(tmp_path, 10_000, public=True)
    page = ui.get("/resources").text
    assert "10000 of 10000 resources" in page and "page 1 of 100" in page
    assert page.count("<tr class=") == 100
    page = ui.get("/resources?sync=out_of_sync").text
    assert "100 of 10000 resources" in page and 'rel="next"' not in page
    second = ui.get("/resources?page=2").text
    assert "page 2 of 100" in second and "p/00100" in second and "p/00099" not in second
    degraded = ui.get("/resources?health=degraded").text
    assert "10 of 10000" in degraded and "CrashLoopBackOff" in degraded
    assert "1 of 10000" in ui.get("/resources?q=p/09999").text
    assert "page 100 of 100" in ui.get("/resources?page=500").text  # past the end: the last
    overview = ui.get("/").text
    assert "100 out of sync" in overview and "9900 synced" in overview


def test_the_graph_draws_a_neighbourhood_and_refuses_a_hairball(tmp_path: Path) -> None:
    ui = client(tmp_path, 1000, public=True)
    assert "are not drawn" in ui.get("/graph?target=pachyderm").text
    page = ui.get("/graph?resource=pachyderm:Pipeline/p/00500").text
    assert page.count("<rect") == 5  # two hops up and down a chain
    assert 'href="/resources/pachyderm%3APipeline%2Fp%2F00502"' in page


def test_no_value_of_a_sensitive_change_reaches_a_page(tmp_path: Path) -> None:
    ui = client(tmp_path, public=True)
    rid = ResourceId("pachyderm", "Secret", "db")
    change = Change(("spec", "data", "password"), "change", REDACTED, REDACTED)
    ui.app.state.server.runner.resources = Snapshot(  # type: ignore[attr-defined]
        1,
        time.time(),
        (ResourceStatus(rid, "out_of_sync", Health("healthy"), "patch", changes=(change,)),),
    )
    page = ui.get("/resources/pachyderm:Secret/db").text
    assert "spec.data.password" in page and "(sensitive)" in page
    assert ui.get("/resources/pachyderm:Secret/other").status_code == 404


def test_pages_forbid_framing_and_foreign_scripts(tmp_path: Path) -> None:
    answer = client(tmp_path, public=True).get("/")
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert answer.headers["cache-control"] == "no-store"


def test_a_link_cannot_put_words_in_the_uis_mouth(tmp_path: Path) -> None:
    ui = client(tmp_path, public=True)
    forged = ui.get("/?done=Your+session+expired,+log+in+at+evil.example.com").text
    assert "evil.example.com" not in forged
    csrf = login(ui)
    answer = ui.post("/actions/refresh", data={"csrf": csrf, "next": "/runs"})
    shown = ui.get(answer.headers["location"]).text
    assert "a refresh (plan only) was queued" in shown


def failed_run(number: int) -> RunReport:
    """A scheduled run that planned a thousand creates and had every one refused."""
    ids = [f"pachyderm:Repo/p/r{index:04d}" for index in range(PLAN_KEPT)]
    return RunReport(
        number,
        Trigger("schedule"),
        time.time(),
        time.time(),
        result="failed",
        planned={"create": PLAN_KEPT},
        plan=[
            {"id": i, "action": "create", "reasons": ["not found"], "step": 0, "bounce": False}
            for i in ids
        ],
        results=[
            {"id": i, "action": "create", "status": "failed", "message": "403", "calls": []}
            for i in ids
        ],
    )


def test_an_outage_of_failing_runs_keeps_the_history_bounded(tmp_path: Path) -> None:
    ui = client(tmp_path, public=True)
    runner = ui.app.state.server.runner  # type: ignore[attr-defined]
    for number in range(1, HISTORY + 1):
        runner.remember(failed_run(number))
    assert len(runner.history) == HISTORY  # every run is still listed ...
    assert sum(r.lines for r in runner.history) <= HISTORY_LINES  # ... not every detail
    newest, oldest = runner.history[0], runner.history[-1]
    assert not newest.trimmed and len(newest.plan) == PLAN_KEPT
    assert oldest.trimmed and not oldest.plan and not oldest.results
    assert "pachyderm:Repo/p/r0999" in ui.get(f"/runs/{newest.number}").text
    page = ui.get(f"/runs/{oldest.number}").text
    assert "no longer kept" in page and f"{PLAN_KEPT} create" in page
    assert "pachyderm:Repo/p/r0999" not in page

    # What a replica publishes after each run for the others' pages is bounded too, and
    # another replica shows a trimmed run as trimmed.
    seen = runner.seen()
    assert len(seen["history"]) == SEEN_KEPT
    assert sum(len(r["plan"]) + len(r["results"]) for r in seen["history"]) <= SEEN_LINES
    assert len(json.dumps(seen)) < 2_000_000
    other = client(tmp_path / "other", public=True)
    other.app.state.server.runner.show(json.loads(json.dumps(seen)))  # type: ignore[attr-defined]
    assert "pachyderm:Repo/p/r0999" in other.get(f"/runs/{newest.number}").text
    assert "no longer kept" in other.get(f"/runs/{newest.number - 10}").text
