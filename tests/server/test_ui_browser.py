"""The web UI in a real browser: headless chromium against a serve of the quickstart on
the sandbox, applied, then drifted behind reconciler's back and crashed.

Screenshots go to $RECONCILER_SCREENSHOTS when set (scripts/screenshots.sh regenerates
the README's images so), else into the test's temporary folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.insights import InsightsOptions
from reconciler.sandbox.pachyderm import Pachd, PachydermOptions
from reconciler.sandbox.store import Store
from tests.browser import chromium
from tests.gitrepo import GitRepo
from tests.pachyderm.helpers import served
from tests.server.serving import finished, quickstart_repo, serving, status, wait_for

TOKEN = "ui-token-4b7c9e"
SECRET_VALUE = "hunter2-db-password-9f1a"
EDGES = "pachyderm:Pipeline/vision/edges"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    options = SandboxOptions(
        insights=InsightsOptions(deploy_delay=0.05),
        pachyderm=PachydermOptions(crash_images=frozenset({"bad:1"})),
    )
    db = tmp_path / "sandbox.db"
    with served(create_app(db, options)) as url:
        yield url, db


def the_repo(root: Path, url: str) -> GitRepo:
    secret = (
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: db}\n"
        'spec: {data: {password: "${env:DB_PASSWORD}"}}\n'
    )
    return quickstart_repo(root, url, files={"manifests/secret.yaml": secret})


def crash_edges(db: Path) -> None:
    """An administrator points the pipeline at an image that cannot be pulled."""
    store = Store(db)
    try:
        pachd = Pachd(store)
        with store.transaction():
            (edges,) = [p for p in pachd.ListPipeline({}) if p["pipeline"]["name"] == "edges"]
            spec = json.loads(edges["userSpecJson"])
            spec["transform"]["image"] = "bad:1"
            pachd.CreatePipelineV2({"createPipelineRequestJson": json.dumps(spec), "update": True})
    finally:
        store.close()


class Visit:
    """The browser, with what every page must never hold checked on each visit."""

    def __init__(self, browser: WebDriver, base: str, shots: Path) -> None:
        self.browser = browser
        self.base = base
        self.shots = shots
        self.pages: list[str] = []

    def open(self, path: str) -> str:
        self.browser.get(self.base + path)
        return self.check()

    def check(self) -> str:
        source = self.browser.page_source
        assert SECRET_VALUE not in source and TOKEN not in source, self.browser.current_url
        self.pages.append(self.browser.current_url)
        return self.browser.find_element(By.TAG_NAME, "main").text

    def shot(self, name: str) -> None:
        self.browser.save_screenshot(str(self.shots / f"ui-{name}.png"))

    def click(self, css: str, confirm: bool = False) -> str:
        self.browser.find_element(By.CSS_SELECTOR, css).click()
        if confirm:
            self.browser.switch_to.alert.accept()
        wait_for(
            "the page after the click",
            lambda: self.browser.execute_script("return document.readyState") == "complete",
        )
        return self.check()


def test_the_web_ui_in_chromium(tmp_path: Path, sandbox: tuple[str, Path]) -> None:
    url, db = sandbox
    repo = the_repo(tmp_path, url)
    shots = Path(os.environ.get("RECONCILER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    env = {"RECONCILER_UI_TOKEN": TOKEN, "DB_PASSWORD": SECRET_VALUE}
    with (
        serving(repo.url, tmp_path, ["--ref", "main"], env) as base,
        chromium(tmp_path / "profile") as browser,
    ):
        assert status(base)["last_run"]["result"] == "succeeded"
        visit = Visit(browser, base, shots)

        # Without the token: every page sends to the login page, and actions are refused.
        assert "UI token" in visit.open("/resources")
        assert "/login" in browser.current_url
        refused = httpx.post(f"{base}/actions/sync", data={"csrf": "x"}, timeout=5)
        assert refused.status_code == 403
        browser.find_element(By.NAME, "token").send_keys("not-the-token")
        assert "That is not the UI token." in visit.click("form.login button")

        browser.find_element(By.NAME, "token").send_keys(TOKEN)
        text = visit.click("form.login button")
        assert "/resources" in browser.current_url  # back where the login began
        text = visit.open("/")
        pachyderm = browser.find_element(By.ID, "target-pachyderm").text
        assert "7 synced" in pachyderm and "7 healthy" in pachyderm, pachyderm
        visit.shot("overview")

        # Suspend automation during an incident, with a reason.
        browser.find_element(By.CSS_SELECTOR, ".actions input[name=reason]").send_keys(
            "incident 42"
        )
        text = visit.click(".actions form[action='/actions/suspend'] button", confirm=True)
        assert "automation suspended on every target" in text
        assert "incident 42" in text

        # Drift and a crash behind reconciler's back; sync now plans, applies nothing.
        crash_edges(db)
        before = status(base)["last_run"]["number"]
        text = visit.click(".actions form[action='/actions/sync'] button")
        assert "a run was queued" in text
        wait_for("the sync", lambda: finished(base, before + 1))
        assert status(base)["last_run"]["result"] == "drift"

        text = visit.open("/resources?sync=out_of_sync")
        assert EDGES in text
        row = browser.find_element(By.CSS_SELECTOR, "table.resources tbody tr").text
        assert "out of sync" in row and "degraded" in row
        assert 'back-off pulling image "bad:1"' in row
        visit.shot("resources")

        text = visit.open("/resources/" + EDGES.replace(":", "%3A").replace("/", "%2F"))
        assert "spec.transform.image" in text
        assert '"bad:1"' in text and '"pachyderm/opencv:1.0"' in text
        assert "restarts it" in text
        assert "pachyderm:Repo/vision/images" in text  # what it uses
        assert "pachyderm:Pipeline/vision/montage" in text  # what uses it
        visit.shot("resource")

        text = visit.open("/resources/pachyderm%3ASecret%2Fdb")
        assert "synced" in text

        text = visit.open("/runs")
        assert "drift" in text and "succeeded" in text
        visit.shot("runs")
        text = visit.open(f"/runs/{before + 1}")
        assert "planned, not applied, on insights, pachyderm" in text
        assert EDGES in text

        visit.open("/graph?target=pachyderm")
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "svg.graph text")]
        assert "Pipeline/vision/edges" in labels
        visit.shot("graph")

        # Resume and sync: the drift is repaired.
        visit.open("/")
        text = visit.click(".actions form[action='/actions/resume'] button")
        assert "automation resumed on every target" in text
        current = status(base)["last_run"]["number"]
        visit.click(".actions form[action='/actions/sync'] button")
        wait_for("the repair", lambda: finished(base, current + 1))
        assert status(base)["last_run"]["result"] == "succeeded"
        text = visit.open("/resources?sync=out_of_sync")
        assert "Nothing matches." in text

        # Logged out, the pages are closed again.
        browser.delete_all_cookies()
        assert "UI token" in visit.open("/")
        assert len(visit.pages) >= 12


def test_read_only_pages_open_to_all_with_ui_public(
    tmp_path: Path, sandbox: tuple[str, Path]
) -> None:
    url, _ = sandbox
    repo = the_repo(tmp_path, url)
    env = {"RECONCILER_UI_TOKEN": TOKEN, "DB_PASSWORD": SECRET_VALUE}
    with serving(repo.url, tmp_path, ["--ref", "main", "--ui-public"], env) as base:
        page = httpx.get(f"{base}/resources", timeout=5)
        assert page.status_code == 200 and EDGES in page.text
        assert "Log in" in page.text and "Sync now" not in httpx.get(base, timeout=5).text
        answer: Any = httpx.post(f"{base}/actions/suspend", data={}, timeout=5)
        assert answer.status_code == 403
