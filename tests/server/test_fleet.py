"""Many sources in one service (`serve --config`): listed and generated sources, each with
its own state, runs, webhooks and UI; one source's broken commit leaves the others
alone; the configuration refused at its line."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from reconciler.errors import InputError
from reconciler.manifests.serve_config import ServeConfig
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.server.fleet import create_fleet_app, sources_of
from reconciler.server.hooks import Trigger
from reconciler.server.runs import RunReport, ServeOptions
from tests.conftest import run_cli
from tests.gitrepo import GitRepo
from tests.pachyderm.helpers import served
from tests.server.serving import serving, wait_for

SECRET_A = "secret-of-team-a"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    with served(create_app(tmp_path / "sandbox.db", SandboxOptions())) as url:
        yield url


def team(project: str, url: str, state: Path) -> dict[str, str]:
    """A small manifests folder of its own: a project and a repo on the shared pachd."""
    return {
        "reconciler.yaml": (
            f"manifests: [.]\nstate: sqlite:///{state}\n"
            f"targets:\n  pachyderm: {{provider: pachyderm, url: '{url}'}}\n"
        ),
        "project.yaml": (
            f"apiVersion: pachyderm/v1\nkind: Project\nmetadata: {{name: {project}}}\n---\n"
            f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: raw, project: {project}}}\n"
            "spec: {description: first}\n"
        ),
    }


def repo_with(root: Path, folders: dict[str, dict[str, str]]) -> GitRepo:
    repo = GitRepo(root)
    for folder, files in folders.items():
        for name, text in files.items():
            repo.write(f"{folder}/{name}" if folder else name, text)
    repo.commit("manifests")
    repo.push()
    return repo


def summary(base: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base}/status", timeout=5).json()["sources"]
    return data


def ran(base: str, source: str, number: int) -> bool:
    last = summary(base)[source]["last_run"]
    return last is not None and last["number"] >= number


def push(base: str, source: str, sha: str, delivery: str) -> httpx.Response:
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    signature = "sha256=" + hmac.new(SECRET_A.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    }
    return httpx.post(f"{base}/sources/{source}/hooks/github", content=body, headers=headers)


def test_many_sources_in_one_service(tmp_path: Path, sandbox: str) -> None:
    a = repo_with(tmp_path / "a", {"": team("alpha", sandbox, tmp_path / "a.db")})
    b = repo_with(tmp_path / "b", {"": team("beta", sandbox, tmp_path / "b.db")})
    mono = repo_with(
        tmp_path / "mono",
        {
            "teams/gamma": team("gamma", sandbox, tmp_path / "g.db"),
            "teams/delta": team("delta", sandbox, tmp_path / "d.db"),
            "docs": {"README.md": "no reconciler.yaml here\n"},
        },
    )
    config = tmp_path / "serve.yaml"
    config.write_text(
        "defaults: {mode: apply, interval: 1h}\n"
        "parallel_runs: 2\n"
        "sources:\n"
        f"  - {{name: a, url: '{a.url}', ref: main, webhooks: {{github: TEAM_A_SECRET}}}}\n"
        f"  - {{name: b, url: '{b.url}', ref: main, mode: plan}}\n"
        "generators:\n"
        f"  - {{name: mono, url: '{mono.url}', ref: main, folders: ['teams/*']}}\n"
    )
    env = {"TEAM_A_SECRET": SECRET_A, "RECONCILER_UI_TOKEN": "t"}
    names = ["a", "b", "mono-teams-delta", "mono-teams-gamma"]
    with serving(".", tmp_path, ["--config", str(config)], env, first=False) as base:
        wait_for("every source's first run", lambda: all(ran(base, n, 1) for n in names))
        every = summary(base)
        assert sorted(every) == names
        assert every["a"]["last_run"]["result"] == "succeeded"
        assert every["a"]["synced"] == 2 and every["a"]["mode"] == "apply"
        assert every["b"]["last_run"]["result"] == "drift"  # plan mode: found, not applied
        assert every["mono-teams-gamma"]["last_run"]["result"] == "succeeded"

        # A push to a's repository, announced to a's hook: a runs, and a alone.
        a.replace("project.yaml", "description: first", "description: second")
        sha = a.commit("second")
        a.push()
        assert push(base, "a", sha, "d-1").status_code == 202
        wait_for("a's run", lambda: ran(base, "a", 2))
        assert summary(base)["a"]["last_run"]["revision"] == sha
        assert summary(base)["mono-teams-gamma"]["last_run"]["number"] == 1
        assert push(base, "b", sha, "d-2").status_code == 404  # b has no github secret

        # b's commit breaks: b's run is invalid, the others go on.
        b.write("broken.yaml", "kind: Nonsense\n")
        b.commit("broken")
        b.push()
        answer = httpx.post(
            f"{base}/sources/b/actions/sync", headers={"Authorization": "Bearer t"}, timeout=5
        )
        assert answer.status_code == 202
        wait_for("b's run", lambda: ran(base, "b", 2))
        assert summary(base)["b"]["last_run"]["result"] == "invalid"
        a.replace("project.yaml", "description: second", "description: third")
        sha = a.commit("third")
        a.push()
        assert push(base, "a", sha, "d-3").status_code == 202
        wait_for("a's next run", lambda: ran(base, "a", 3))
        assert summary(base)["a"]["last_run"]["result"] == "succeeded"

        # Each source's own pages, state and metrics.
        page = httpx.get(f"{base}/", cookies=login(base), timeout=5).text
        assert 'href="/sources/mono-teams-delta/"' in page and "invalid" in page
        resources = httpx.get(f"{base}/sources/a/resources", cookies=login(base), timeout=5)
        assert "pachyderm:Project/alpha" in resources.text
        assert "pachyderm:Project/beta" not in resources.text
        assert 'href="/sources/a/resources/' in resources.text
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'reconciler_runs_total{result="invalid",source="b",trigger="sync"} 1.0' in metrics
        assert metrics.count("# TYPE reconciler_runs_total counter") == 1
        assert (tmp_path / "g.db").exists() and (tmp_path / "d.db").exists()


def login(base: str) -> dict[str, str]:
    answer = httpx.post(f"{base}/sources/a/login", data={"token": "t", "next": "/"}, timeout=5)
    assert answer.status_code == 303
    return dict(answer.cookies)


def test_a_bad_serve_configuration_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        "sources:\n  - {name: a, url: 'file:///x'}\n  - {name: Bad_Name, url: 'file:///y'}\n"
    )
    assert run_cli("serve", "--config", str(config), "--port", "1") == 3
    err = capsys.readouterr().err
    assert f"{config}:3" in err and "not a valid source name" in err
    config.write_text("sources: []\n")
    assert run_cli("serve", "--config", str(config)) == 3
    assert "nothing to reconcile" in capsys.readouterr().err
    assert run_cli("serve", str(tmp_path), "--config", str(config)) == 3
    assert "SOURCE and --config both name sources" in capsys.readouterr().err
    witness = tmp_path / "pwned"
    config.write_text(
        "sources:\n"
        f"  - {{name: a, url: '--upload-pack=touch {witness}'}}\n"
        "  - {name: b, url: 'file:///y', ref: '--output=x'}\n"
        "  - {name: a, url: 'file:///z'}\n"
    )
    assert run_cli("serve", "--config", str(config), "--port", "1") == 3
    err = capsys.readouterr().err
    assert f"{config}:2" in err and "git would read it as an option" in err
    assert f"{config}:3" in err and "sources[1].ref" in err
    assert f"{config}:4" in err and "'a' is sources[0]'s name already" in err
    assert not witness.exists()


def test_the_serve_configuration_has_a_schema(tmp_path: Path) -> None:
    assert run_cli("schema", "--out", str(tmp_path)) == 0
    schema = json.loads((tmp_path / "serve.schema.json").read_text())
    assert "sources" in schema["properties"] and "generators" in schema["properties"]
    assert (Path(__file__).parents[2] / "specs" / "serve.schema.json").exists()


def test_a_run_published_for_the_other_replicas_reads_back_whole() -> None:
    """What a replica publishes of its runs (JSON in PostgreSQL) is what the others'
    web UI shows: every field of the report comes back, the trigger included."""
    report = RunReport(
        7,
        Trigger("github", "abc123", "delivery-1", plan=False),
        100.0,
        finished_at=101.5,
        result="failed",
        error="pachd said no",
        drifted={"pachyderm": ["pachyderm:Repo/p/raw"]},
        held=["insights"],
        plan=[{"action": "patch"}],
        results=[{"status": "failed"}],
        refusals=["mass delete"],
    )
    assert RunReport.from_record(json.loads(json.dumps(report.to_record()))) == report


def test_a_generator_leaves_out_folders_it_cannot_serve_and_serves_the_others(
    tmp_path: Path,
) -> None:
    """Whoever commits to a generator's repository must not stop the service's other
    sources: a folder whose name another folder or a listed source also makes, or that
    makes no usable name, is left out (each of a clashing pair: a source must not
    change hands), said why; the rest is served."""
    state = {"reconciler.yaml": "manifests: [.]\n"}
    mono = repo_with(
        tmp_path / "mono",
        {
            "teams/gamma": state,
            "teams/a-b": state,
            "teams/a/b": state,  # the same name as teams/a-b: mono-teams-a-b
            "teams/listed": state,  # mono-teams-listed, a listed source's name
            "teams/___": state,  # mono-teams: fine, it is a name
            "teams/" + "x" * 60: state,  # cut to 48 characters, no trailing '-'
        },
    )
    other = repo_with(tmp_path / "other", {"": state})

    config = ServeConfig.model_validate(
        {
            "sources": [{"name": "mono-teams-listed", "url": other.url}],
            "generators": [{"name": "mono", "url": mono.url, "folders": ["teams/*"]}],
        }
    )
    served, left = sources_of(config)
    names = sorted(s.name for s in served)
    assert names == sorted(
        ["mono-teams-listed", "mono-teams-gamma", "mono-teams", "mono-teams-" + "x" * 37]
    )
    assert next(s for s in served if s.name == "mono-teams-listed").url == other.url
    why = {o.folder: o.why for o in left}
    assert why == {
        "teams/a-b": "folder teams/a/b makes the same name mono-teams-a-b",
        "teams/a/b": "folder teams/a-b makes the same name mono-teams-a-b",
        "teams/listed": "its name mono-teams-listed is a listed source's",
    }

    # The service's page and /status say which folders are left out, and why.
    app = create_fleet_app(config, lambda *args: None, ServeOptions(source=".", ui_public=True))  # type: ignore[arg-type]
    client = TestClient(app)  # outside `with`: no lifespan, nothing runs
    page = client.get("/").text
    assert "folder <code>teams/a/b</code>" in page and "makes the same name" in page
    assert len(client.get("/status").json()["left_out"]) == 3

    # Nothing left to serve: an input error that says why.
    alone = ServeConfig.model_validate(
        {"generators": [{"name": "m", "url": mono.url, "folders": ["teams/a*"]}]}
    )
    with pytest.raises(InputError, match=r"no source to serve.*makes the same name m-teams-a-b"):
        sources_of(alone)
