"""`reconciler serve` as a real process on a free port, the quickstart in a git remote
for it to follow, and waiting on what it reports: for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import EXAMPLES
from tests.gitrepo import GitRepo
from tests.pachyderm.helpers import free_port
from tests.test_resilience import CLEAN_ENV


def quickstart_repo(
    root: Path, url: str, *, files: dict[str, str] | None = None, config: str = ""
) -> GitRepo:
    """The quickstart, its targets the sandbox at `url`, its state in `root`, committed
    and pushed to a bare remote; `files` added beside it, `config` appended to
    reconciler.yaml."""
    repo = GitRepo(root / "git")
    shutil.copytree(EXAMPLES / "quickstart" / "manifests", repo.work / "manifests")
    shutil.copytree(EXAMPLES / "quickstart" / "packages", repo.work / "packages")
    for relative, text in (files or {}).items():
        repo.write(relative, text)
    repo.write(
        "reconciler.yaml",
        f"manifests: [manifests/]\nstate: sqlite:///{root / 'state.db'}\ntargets:\n"
        f"  insights: {{provider: insights, url: '{url}'}}\n"
        f"  pachyderm: {{provider: pachyderm, url: '{url}'}}\n{config}",
    )
    repo.commit("the quickstart, against the test's sandbox")
    repo.push()
    return repo


def wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def status(base: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base}/status", timeout=5).json()
    return data


def finished(base: str, number: int) -> bool:
    """Whether run `number` (or a later one) has ended."""
    last = status(base)["last_run"]
    return last is not None and last["number"] >= number


def up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serving(
    source: str,
    tmp_path: Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    *,
    first: bool = True,
) -> Iterator[str]:
    """A serve of `source` in apply mode, its schedule an hour away; yields its URL once
    its first run has ended (with `first`), else once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {**CLEAN_ENV, "RECONCILER_CACHE": str(tmp_path / "cache"), **(env or {})}
    command = [sys.executable, "-m", "reconciler", "serve", source, "--port", str(port)]
    command += ["--mode", "apply", "--interval", "1h", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ
    )
    try:
        wait_for("the server", lambda: up(base) or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        if first:
            wait_for("the first run", lambda: finished(base, 1))
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


class Replica:
    """A `serve --config` process; its output in `log`."""

    def __init__(self, process: subprocess.Popen[str], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log


@contextmanager
def replicas(
    config: Path, folder: Path, count: int, env: dict[str, str] | None = None
) -> Iterator[list[Replica]]:
    """`count` replicas of `serve --config`, each on a free port, answering; SIGTERM (after
    SIGCONT, for one a test stopped) at the end."""
    started: list[Replica] = []
    try:
        for number in range(count):
            port = free_port()
            environ = {
                **CLEAN_ENV,
                "RECONCILER_CACHE": str(folder / f"cache-{number}"),
                **(env or {}),
            }
            command = [sys.executable, "-m", "reconciler", "serve", "--config", str(config)]
            command += ["--port", str(port)]
            path = folder / f"replica-{number}.log"
            with path.open("w") as log:
                process = subprocess.Popen(command, stdout=log, stderr=log, text=True, env=environ)
            started.append(Replica(process, f"http://127.0.0.1:{port}", path))
        for replica in started:

            def answering(r: Replica = replica) -> bool:
                return up(r.base) or r.process.poll() is not None

            wait_for("a replica", answering, 60)
            assert replica.process.poll() is None, replica.log.read_text()
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                os.kill(replica.process.pid, signal.SIGCONT)
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.process.wait(60)
            except subprocess.TimeoutExpired:
                replica.process.kill()


def owners(database: str) -> dict[str, str]:
    """Each source's owner while its lease holds."""
    with psycopg.connect(database, autocommit=True) as db:
        rows = db.execute(
            "SELECT source, owner FROM reconciler_sources"
            " WHERE expires > extract(epoch from clock_timestamp())"
        ).fetchall()
    return {row[0]: row[1] for row in rows if row[1]}


def applied(database: str, expected: dict[str, str]) -> set[str]:
    """The sources (each with its state in the schema of its name) whose last successful
    apply is of the expected revision."""
    return set(applied_at(database, expected))


def applied_at(
    database: str | psycopg.Connection[Any], expected: dict[str, str]
) -> dict[str, float]:
    """As `applied`, with when each of those runs finished (the state's wall clock): two
    statements, on the connection given (or one of its own), so that polling it does not
    compete with the replicas for the CPU."""
    with contextlib.ExitStack() as stack:
        db = database
        if isinstance(db, str):
            db = stack.enter_context(psycopg.connect(db, autocommit=True))
        present = {
            row[0]
            for row in db.execute(
                "SELECT table_schema FROM information_schema.tables"
                " WHERE table_name = 'runs' AND table_schema = ANY(%s)",
                (list(expected),),
            )
        }
        if not present:
            return {}
        query = " UNION ALL ".join(
            f"(SELECT '{name}', revision, finished_at FROM {name}.runs"
            " WHERE result = 'succeeded' ORDER BY id DESC LIMIT 1)"
            for name in sorted(present)
        )
        rows = db.execute(query.encode()).fetchall()
    return {name: float(at) for name, revision, at in rows if revision == expected[name]}


def announce(replica: Replica, source: str, token: str, client: httpx.Client | None = None) -> None:
    """A generic webhook for `source`, to this replica (through `client` when given: a
    client per call costs the caller tens of milliseconds of CPU)."""
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(httpx.Client(timeout=10))
        answer = client.post(
            f"{replica.base}/sources/{source}/hooks/generic",
            headers={"Authorization": f"Bearer {token}"},
            json={},
        )
    assert answer.status_code == 202, answer.text
