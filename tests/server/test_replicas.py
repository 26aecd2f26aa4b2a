"""Replicas sharing sources through a real PostgreSQL: three `serve --config` processes,
thirty sources in local git repositories, the sandbox as their target. Work spreads;
every push is reconciled exactly once (the sandbox counts the calls); a replica killed
with -9 has its sources finished by the others within the lease; one stopped (SIGSTOP)
past its lease makes no call once it wakes."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.pachyderm import Pachd
from reconciler.sandbox.store import Store
from tests.gitrepo import GitRepo
from tests.pachyderm.helpers import served
from tests.server.serving import announce, applied, owners, replicas, wait_for
from tests.test_resilience import stats

TOKEN = "replica-token"
ENV = {"RECONCILER_WEBHOOK_TOKEN": TOKEN}
LEASE = 3.0
UPDATE = "POST /api/pfs_v2.API/CreateRepo"
REPOS = 200
"""Creates in the paused replica's apply: enough that a slow poll still pauses it
mid-way."""


def manifests(
    project: str, url: str, state: str, repos: int = 1, description: str = "one"
) -> dict[str, str]:
    documents = [f"apiVersion: pachyderm/v1\nkind: Project\nmetadata: {{name: {project}}}\n"]
    for number in range(repos):
        documents.append(
            "apiVersion: pachyderm/v1\nkind: Repo\n"
            f"metadata: {{name: r{number}, project: {project}}}\n"
            f"spec: {{description: {description}}}\n"
        )
    return {
        "reconciler.yaml": (
            f"manifests: [.]\nstate: '{state}'\n"
            f"targets:\n  pachyderm: {{provider: pachyderm, url: '{url}'}}\n"
        ),
        "project.yaml": "---\n".join(documents),
    }


def descriptions(db: Path) -> dict[str, str]:
    """Each project's repo r0 description, as the platform holds it."""
    store = Store(db)
    try:
        repos = Pachd(store).ListRepo({})
    finally:
        store.close()
    return {
        r["repo"]["project"]["name"]: r.get("description", "")
        for r in repos
        if r["repo"]["name"] == "r0"
    }


def pending_intents(database: str, schema: str) -> int:
    with psycopg.connect(database, autocommit=True) as db:
        row = db.execute(
            f"SELECT count(*) FROM {schema}.intents WHERE outcome = 'pending'".encode()
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def world(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Any]]:
    options = SandboxOptions(latency_ms=10)
    with ExitStack() as stack:
        sandbox = stack.enter_context(served(create_app(tmp_path / "sandbox.db", options)))
        yield {"sandbox": sandbox, "db": tmp_path / "sandbox.db", "database": postgres_url}


def write_config(tmp_path: Path, database: str, sources: dict[str, GitRepo]) -> Path:
    lines = [
        f"coordination: {{database: '{database}', lease: {LEASE:g}s, tick: 0.5s}}",
        "defaults: {mode: apply, interval: 1h}",
        "parallel_runs: 4",
        "sources:",
    ]
    lines += [
        f"  - {{name: {name}, url: '{repo.url}', ref: main}}" for name, repo in sources.items()
    ]
    config = tmp_path / "serve.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_three_replicas_share_thirty_sources_and_survive_kill_9(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    database = world["database"]
    states = {f"s{n:02d}": f"{database}?schema=s{n:02d}" for n in range(30)}
    repos: dict[str, GitRepo] = {}
    for name, state in states.items():
        repo = GitRepo(tmp_path / "git" / name)
        for file, text in manifests(f"p{name}", world["sandbox"], state).items():
            repo.write(file, text)
        repo.commit("first")
        repo.push()
        repos[name] = repo
    config = write_config(tmp_path, database, repos)
    with replicas(config, tmp_path, 3, ENV) as running:
        firsts = {name: repo.head() for name, repo in repos.items()}
        wait_for("every source applied", lambda: applied(database, firsts) == set(firsts), 120)
        held = owners(database)
        assert len(held) == 30 and len(set(held.values())) == 3  # the work spread
        # Any replica's UI shows any source, from what its owner published.
        source, owner = next(iter(sorted(held.items())))
        other = next(r for r in running if str(r.process.pid) not in str(owner))
        page = httpx.get(
            f"{other.base}/sources/{source}/resources",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert page.status_code == 200 and f"pachyderm:Project/p{source}" in page.text
        assert stats(world["db"])["calls"][UPDATE] == 30  # each repo created once

        # A push to every source, announced to any replica: each applied exactly once.
        seconds = {}
        for name, repo in repos.items():
            repo.replace("project.yaml", "description: one", "description: two")
            seconds[name] = repo.commit("two")
            repo.push()
            announce(random.choice(running), name, TOKEN)
        wait_for("every push applied", lambda: applied(database, seconds) == set(seconds), 120)
        time.sleep(1)  # anything late would show now
        assert stats(world["db"])["calls"][UPDATE] == 60

        # kill -9 of a replica while it applies: its sources finish on the others.
        victim = running[0]
        mine = sorted(
            s for s, owner in owners(database).items() if owner and str(victim.process.pid) in owner
        )
        assert mine
        thirds = {}
        for name in mine:
            repo = repos[name]
            repo.replace("project.yaml", "description: two", "description: three")
            thirds[name] = repo.commit("three")
            repo.push()
            announce(victim, name, TOKEN)
        wait_for(
            "a run in flight on the victim",
            lambda: stats(world["db"])["calls"][UPDATE] > 60,
            30,
        )
        victim.process.kill()
        killed_at = time.monotonic()

        def moved() -> bool:
            held = owners(database)
            return all(held.get(n) and str(victim.process.pid) not in str(held[n]) for n in mine)

        wait_for("the victim's sources claimed by the others", moved, LEASE * 10)
        took = time.monotonic() - killed_at
        wait_for(
            "the victim's sources finished",
            lambda: all(descriptions(world["db"])[f"p{n}"] == "three" for n in mine),
            LEASE * 10,
        )
        time.sleep(1)
        assert took < LEASE * 3  # within the lease, and a tick or two
        assert stats(world["db"])["calls"][UPDATE] == 60 + len(mine)  # none lost, none twice
        # Nothing left half done: the new owners closed what the victim had open.
        wait_for(
            "no intent left open",
            lambda: all(pending_intents(database, n) == 0 for n in mine),
            LEASE * 5,
        )
        survivors = {o for o in owners(database).values() if o}
        assert len(survivors) == 2 and not any(str(victim.process.pid) in o for o in survivors)


def test_a_replica_paused_past_its_lease_makes_no_call_when_it_wakes(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    database = world["database"]
    state = f"{database}?schema=big"
    repo = GitRepo(tmp_path / "git" / "big")
    for file, text in manifests("big", world["sandbox"], state, repos=REPOS).items():
        repo.write(file, text)
    repo.commit("first")
    repo.push()
    config = write_config(tmp_path, database, {"big": repo})
    with replicas(config, tmp_path, 2, ENV) as running:
        wait_for("an owner", lambda: bool(owners(database)), 30)
        (owner,) = owners(database).values()
        paused = next(r for r in running if owner and str(r.process.pid) in owner)
        # Pause it in the middle of its first apply (REPOS creates, eight at a time).
        wait_for("the apply under way", lambda: stats(world["db"])["calls"].get(UPDATE, 0) >= 3, 60)
        os.kill(paused.process.pid, signal.SIGSTOP)
        stopped_at = stats(world["db"])["calls"][UPDATE]
        # Paused before its apply ended, or this test would test nothing (a loaded machine
        # polls slowly: hence many creates).
        assert stopped_at < REPOS
        wait_for(
            "the other replica to finish it",
            lambda: applied(database, {"big": repo.head()}) == {"big"},
            LEASE * 20,
        )
        finished = stats(world["db"])["mutating"]
        os.kill(paused.process.pid, signal.SIGCONT)
        time.sleep(LEASE)  # it wakes, its run goes on: its fence must stop it
        after = stats(world["db"])
        assert after["mutating"] == finished, "the woken replica made a call"
        assert after["calls"][UPDATE] == REPOS
        # It found out at its next call, from the database, and made none.
        wait_for(
            "the woken replica to say why it stopped",
            lambda: "no further call is made" in paused.log.read_text(),
            LEASE * 10,  # its run ends once each call in flight is fenced: slower when loaded
        )
