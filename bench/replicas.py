"""Replicas benchmark (issue 21): `serve --config` replicas on one PostgreSQL, against a
sandbox that adds 20 ms to every call (I/O bound: replicas help even on 2 cores).

- throughput: N sources (a project and a repo each, their own state schema), each
  replica running one source at a time (`parallel_runs: 1`), each replica count on a
  database and a sandbox of its own (the same cluster for all); a change pushed to every
  source and announced to the replicas in turn; sources reconciled per minute, until
  every change is applied, with 1, 2 and 3 replicas, measured in the order 1, 2, 3, 3,
  2, 1 (each time after a warm-up round, 5 rounds; the figure is the median of a count's
  10). Goal: 3 replicas at least 2.5x one. For scale, one replica with the default
  `parallel_runs` too: on two cores it already keeps the CPU busy.
- latency: 100 sources, 3 replicas: one change at a time, announced to a random replica;
  webhook to applied (the source's state records the run), p50 and p95.
- fail-over: 3 replicas, kill -9 of the one owning most sources; until the others hold
  all its sources, and until a change pushed to them just before is applied.

Needs Debian's PostgreSQL binaries (as the tests). Run with `make bench` (or `make
bench-quick`: fewer sources). Writes bench/results-replicas.json and its section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import publish  # noqa: E402
from reconciler.manifests.serve_config import ServeConfig  # noqa: E402
from tests.gitrepo import GitRepo  # noqa: E402
from tests.pachyderm.helpers import free_port  # noqa: E402
from tests.postgres import fresh_database, server  # noqa: E402
from tests.server.serving import (  # noqa: E402
    announce,
    applied,
    applied_at,
    owners,
    replicas,
)
from tests.server.serving import wait_for as wait  # noqa: E402

TOKEN = "bench-token"
ROUNDS = 5
"""Measured rounds of changes per replica count and pass (the median of both passes'
rounds is the figure)."""
DEFAULT_PARALLEL: int = ServeConfig.model_fields["parallel_runs"].default
"""`parallel_runs` when the serve configuration does not say."""
ORDER = (1, 2, 3, 3, 2, 1)
"""The replica counts measured, in this order: each twice, once on the way up and once
on the way down."""
ENV = {"RECONCILER_WEBHOOK_TOKEN": TOKEN}


@contextmanager
def sandbox(folder: Path, latency_ms: float) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "reconciler", "sandbox", "serve", "--port", str(port)]
    command += ["--db", str(folder / "sandbox.db"), "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait("the sandbox", lambda: _answers(f"{base}/_sandbox/stats"))
        yield base
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def make_sources(folder: Path, count: int, sandbox_url: str, database: str) -> dict[str, GitRepo]:
    repos = {}
    for number in range(count):
        name = f"s{number:03d}"
        repo = GitRepo(folder / "git" / name)
        repo.write(
            "reconciler.yaml",
            f"manifests: [.]\nstate: '{database}?schema={name}'\n"
            f"targets:\n  pachyderm: {{provider: pachyderm, url: '{sandbox_url}'}}\n",
        )
        repo.write(
            "project.yaml",
            f"apiVersion: pachyderm/v1\nkind: Project\nmetadata: {{name: p{name}}}\n---\n"
            f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: raw, project: p{name}}}\n"
            "spec: {description: v0}\n",
        )
        repo.commit("v0")
        repo.push()
        repos[name] = repo
    return repos


def write_config(
    folder: Path,
    database: str,
    repos: dict[str, GitRepo],
    parallel: int,
    lease: float,
    kept: int = 16,
) -> Path:
    lines = [
        # The default tick (1 s), as users run it.
        f"coordination: {{database: '{database}', lease: {lease:g}s}}",
        "defaults: {mode: apply, interval: 1h}",
        f"parallel_runs: {parallel}",
        f"kept_state_connections: {kept}",
        "sources:",
    ]
    lines += [f"  - {{name: {n}, url: '{r.url}', ref: main}}" for n, r in repos.items()]
    path = folder / "serve.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def change(repos: dict[str, GitRepo], names: list[str], version: int) -> dict[str, str]:
    revisions = {}
    for name in names:
        repo = repos[name]
        repo.replace("project.yaml", f"description: v{version - 1}", f"description: v{version}")
        revisions[name] = repo.commit(f"v{version}")
        repo.push()
    return revisions


def throughput(
    admin: str, latency_ms: float, count: int, replica_count: int, parallel: int = 1
) -> list[float]:
    """Sources reconciled per minute in each measured round."""
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)
        database = fresh_database(admin)
        # A cluster of its own, as a database: each replica count meets the same cluster
        # (these sources' projects), not one grown by the counts measured before it.
        sandbox_url = stack.enter_context(sandbox(folder, latency_ms))
        repos = make_sources(folder, count, sandbox_url, database)
        # Every source's state store kept, whatever the number of replicas: one replica
        # holding all the sources must not pay a reconnection per run that three do not.
        config = write_config(folder, database, repos, parallel=parallel, lease=10, kept=count)
        running = stack.enter_context(replicas(config, folder, replica_count, ENV))
        client = stack.enter_context(_client())
        heads = {n: r.head() for n, r in repos.items()}
        wait("the first runs", lambda: len(applied(database, heads)) == count, 600)
        rates = []
        # Round 1 warms up: the first change after the creations is each process's first
        # patch (what that path imports and caches, paid once per replica, is start-up,
        # not throughput). Then the rounds measured.
        for version in range(1, 2 + ROUNDS):
            expected = change(repos, sorted(repos), version)
            # The pushes' files written out now: the kernel's writeback of the harness's
            # own commits would otherwise run during the round, on the replicas' CPU.
            os.sync()
            started = time.time()
            # Delivered at once, as a burst of pushes' webhooks would be (one after
            # the other, the last replica's first source would wait on the others).
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda pair: announce(
                            running[pair[0] % len(running)], pair[1], TOKEN, client
                        ),
                        enumerate(sorted(repos)),
                    )
                )
            finished = _until_applied(database, expected, 600)
            if version > 1:
                rates.append(count / (max(finished.values()) - started) * 60)
        return rates


@contextmanager
def _client() -> Iterator[httpx.Client]:
    # Idle connections let go after a second: uvicorn closes them after five, and a
    # request sent on one just as the server closes it fails (connection reset).
    with httpx.Client(timeout=10, limits=httpx.Limits(keepalive_expiry=1)) as client:
        yield client


def _until_applied(database: str, expected: dict[str, str], seconds: float) -> dict[str, float]:
    """When each expected run finished, by the state's clock. Polled slowly: the time
    measured is the one the state records, so the harness need not compete with the
    replicas for the CPU to measure them."""
    deadline = time.monotonic() + seconds
    # One connection for the whole wait: a connection per poll is a server process
    # started and ended four times a second, CPU the replicas measured would miss.
    with psycopg.connect(database, autocommit=True) as db:
        while len(done := applied_at(db, expected)) < len(expected):
            assert time.monotonic() < deadline, "timed out waiting for every change applied"
            time.sleep(0.25)
    return done


def latency(admin: str, sandbox_url: str, count: int) -> list[float]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        database = fresh_database(admin)
        repos = make_sources(folder, count, sandbox_url, database)
        config = write_config(folder, database, repos, parallel=2, lease=10)
        with replicas(config, folder, 3, ENV) as running:
            heads = {n: r.head() for n, r in repos.items()}
            wait("the first runs", lambda: len(applied(database, heads)) == count, 900)
            seconds = []
            rng = random.Random(7)
            with _client() as client:
                for name in sorted(repos):
                    expected = change(repos, [name], 1)
                    started = time.time()
                    announce(rng.choice(running), name, TOKEN, client)
                    finished = _until_applied(database, expected, 60)
                    seconds.append(finished[name] - started)
            return seconds


def failover(admin: str, sandbox_url: str, count: int, lease: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        database = fresh_database(admin)
        repos = make_sources(folder, count, sandbox_url, database)
        config = write_config(folder, database, repos, parallel=2, lease=lease)
        with replicas(config, folder, 3, ENV) as running:
            heads = {n: r.head() for n, r in repos.items()}
            wait("the first runs", lambda: len(applied(database, heads)) == count, 600)
            held = owners(database)
            victim = max(running, key=lambda r: sum(str(r.process.pid) in o for o in held.values()))
            theirs = sorted(s for s, o in held.items() if str(victim.process.pid) in o)
            expected = change(repos, theirs, 1)
            victim.process.kill()
            killed = time.monotonic()
            for name in theirs:
                announce(
                    next(r for r in running if r is not victim),
                    name,
                    TOKEN,
                )

            def claimed() -> bool:
                now = owners(database)
                return all(n in now and str(victim.process.pid) not in now[n] for n in theirs)

            wait("the victim's sources claimed", claimed, 120)
            taken = time.monotonic() - killed
            wait(
                "their changes applied",
                lambda: len(applied(database, expected)) == len(theirs),
                120,
            )
            return {
                "sources_moved": len(theirs),
                "lease_s": lease,
                "claimed_s": round(taken, 2),
                "applied_s": round(time.monotonic() - killed, 2),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=30)
    parser.add_argument("--latency-sources", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results-replicas.json")
    args = parser.parse_args()
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count()}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        admin = stack.enter_context(server())
        url = stack.enter_context(sandbox(Path(scratch), args.latency_ms))
        rates: dict[int, float] = {}
        rounds: dict[int, list[float]] = {1: [], 2: [], 3: []}
        # Measured in the order 1, 2, 3 then 3, 2, 1: a shared machine's speed drifts over
        # minutes, and measured once in one order that drift would favour one end.
        for count in ORDER:
            rounds[count] += throughput(admin, args.latency_ms, args.sources, count)
        for count in (1, 2, 3):
            rates[count] = statistics.median(rounds[count])
            shown = ", ".join(f"{r:.0f}" for r in rounds[count])
            print(
                f"throughput, {count} replica(s), {args.sources} sources:"
                f" {rates[count]:.0f}/min (rounds: {shown})"
            )
        # For scale: one replica as it runs by default, several sources at once.
        alone = statistics.median(
            throughput(admin, args.latency_ms, args.sources, 1, parallel=DEFAULT_PARALLEL)
        )
        print(f"throughput, 1 replica, parallel_runs {DEFAULT_PARALLEL}: {alone:.0f}/min")
        seconds = latency(admin, url, args.latency_sources)
        ordered = sorted(seconds)
        p50 = statistics.median(ordered)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(
            f"webhook to applied, {args.latency_sources} sources: p50 {p50:.2f} s, p95 {p95:.2f} s"
        )
        over = failover(admin, url, args.sources, lease=5)
        print(f"fail-over after kill -9: {over}")
    speedup = rates[3] / rates[1]
    report.update(
        {
            "sources": args.sources,
            "latency_ms_per_call": args.latency_ms,
            "per_minute": {str(k): round(v, 1) for k, v in rates.items()},
            "per_minute_rounds": {str(k): [round(r, 1) for r in v] for k, v in rounds.items()},
            "speedup_3_over_1": round(speedup, 2),
            "per_minute_1_replica_default_parallel": {
                "parallel_runs": DEFAULT_PARALLEL,
                "per_minute": round(alone, 1),
            },
            "latency": {
                "sources": args.latency_sources,
                "p50_s": round(p50, 3),
                "p95_s": round(p95, 3),
            },
            "failover": over,
        }
    )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    met = speedup >= 2.5
    markdown = "\n".join(
        [
            f"Replicas (`bench/replicas.py`, {report['date']}, {report['cores']} cores,"
            f" sandbox +{args.latency_ms:g} ms a call):",
            "",
            "| scenario | value |",
            "| --- | ---: |",
            *(
                f"| sources reconciled per minute, {k} replica(s), {args.sources} sources"
                f" (median; rounds {min(rounds[k]):.0f} to {max(rounds[k]):.0f}) | {v:.0f} |"
                for k, v in rates.items()
            ),
            f"| 3 replicas / 1 replica (goal >= 2.5 x) | {speedup:.2f} x"
            f" ({'met' if met else 'NOT met'} in this run; see bench/README) |",
            f"| for scale: 1 replica with the default parallel_runs ({DEFAULT_PARALLEL}),"
            f" {args.sources} sources (median of {ROUNDS} rounds) | {alone:.0f} |",
            f"| webhook to applied, p50, {args.latency_sources} sources | {p50:.2f} s |",
            f"| webhook to applied, p95, {args.latency_sources} sources | {p95:.2f} s |",
            f"| fail-over after kill -9: sources claimed by the others"
            f" (lease {over['lease_s']:g} s) | {over['claimed_s']:.2f} s |",
            f"| fail-over after kill -9: a change pushed before it applied |"
            f" {over['applied_s']:.2f} s |",
        ]
    )
    publish(args.out, "replicas", markdown)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
