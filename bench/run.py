"""The benchmarks of issue 8: reconciler against the floor and the naive CI script.

For each size N (synthetic repositories from `bench/synthetic.py`, seed N), on the
embedded sandbox:
  a. cold no-op plan (caches removed), b. warm no-op plan, each beside the floor
     (`bench/floor.py`), median of 3 runs;
  c. apply K = 10 changes among N, beside the naive script (`bench/naive.py`) on the
     same data: mutating calls and restarts;
then, over real HTTP against `reconciler sandbox serve --latency-ms 20`:
  d. apply 1,000 creates with --concurrency 16, against the ideal bound
     max(2 x depth x latency, (N + pipelines) x latency / concurrency): a pipeline's
     create is two calls, the create and the InspectPipeline that sees it running.
Every command runs in its own process: wall time and that process's peak RSS.

    python bench/run.py                     # N = 1,000 and 10,000; bench/results.json
    python bench/run.py --sizes 1000 --out bench/out/quick.json

Prints a markdown table and writes it beside the JSON (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import put_section  # noqa: E402
from bench.synthetic import Repository, write  # noqa: E402
from reconciler.manifests.cachefile import run_cache  # noqa: E402

PYTHON = sys.executable
K = 10
LATENCY = 0.020
CONCURRENCY = 16
CREATES = 1000


@dataclass
class Measured:
    seconds: float
    rss_mb: float
    code: int
    out: str


def run(*args: str, cwd: Path | None = None) -> Measured:
    """One command in its own process: wall time, its peak RSS, exit code, stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if process.returncode not in (0, 2):
            raise SystemExit(f"{' '.join(args)} failed:\n{text}\n{err.read().decode()}")
    return Measured(seconds, usage.ru_maxrss / 1024, process.returncode, text)


def reconciler(*args: str) -> Measured:
    return run(PYTHON, "-m", "reconciler", *args)


def stats(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reconciler("sandbox", "stats", str(folder), "--reset").out)
    return data


def median(runs: list[Measured]) -> Measured:
    ordered = sorted(runs, key=lambda m: m.seconds)
    return ordered[len(ordered) // 2]


def no_op_plans(repo: Repository) -> dict[str, Any]:
    folder = str(repo.folder)
    results: dict[str, Any] = {}
    stats(repo.folder)  # counters from zero
    cold = []
    for _ in range(3):
        cache = run_cache(repo.folder)
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
        cold.append(reconciler("plan", "--detailed-exitcode", folder))
    calls = stats(repo.folder)
    warm = [reconciler("plan", "--detailed-exitcode", folder) for _ in range(3)]
    floor = [run(PYTHON, str(ROOT / "bench" / "floor.py"), folder) for _ in range(3)]
    stats(repo.folder)
    for name, runs in (("cold", cold), ("warm", warm), ("floor", floor)):
        chosen = median(runs)
        results[name] = {"seconds": round(chosen.seconds, 3), "rss_mb": round(chosen.rss_mb, 1)}
        if name != "floor":
            assert all(m.code == 0 for m in runs), f"{name} plan found changes"
    results["reads"] = calls["reads"] // 3
    results["mutating"] = calls["mutating"]
    # pachd's defaults are read once per project (and `default`): reads grow with
    # projects, never with pipelines (issue: Pachyderm as pachd really behaves).
    results["projects"] = 1 + sum(1 for i in repo.ids if i.startswith("pachyderm:Project/"))
    return results


def k_changes(repo: Repository) -> dict[str, Any]:
    files = sorted((repo.folder / "manifests").glob("g*.yaml"))
    changed: list[str] = []
    for file in files:
        text = file.read_text()
        if "# s0'" in text and len(changed) < K:
            file.write_text(text.replace("# s0'", "# s0 v2'"))
            changed.append(file.stem)
    stats(repo.folder)
    ours = reconciler("apply", "--yes", str(repo.folder))
    after = stats(repo.folder)
    naive = run(PYTHON, str(ROOT / "bench" / "naive.py"), str(repo.folder))
    naive_stats = stats(repo.folder)
    touched = {f"pachyderm:Pipeline/proj{int(stem[1:])}/s0" for stem in changed}
    untouched = {rid: n for rid, n in after["restarts"].items() if rid not in touched}
    return {
        "k": len(changed),
        "ours": {
            "seconds": round(ours.seconds, 3),
            "rss_mb": round(ours.rss_mb, 1),
            "reads": after["reads"],
            "mutating": after["mutating"],
            "restarts": sum(after["restarts"].values()),
            "restarts_of_untouched": sum(untouched.values()),
        },
        "naive": {
            "seconds": round(naive.seconds, 3),
            "rss_mb": round(naive.rss_mb, 1),
            "reads": naive_stats["reads"],
            "mutating": naive_stats["mutating"],
            "restarts": sum(naive_stats["restarts"].values()),
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def creates_with_latency(scratch: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "reconciler",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--db",
            str(scratch / "latency.db"),
            "--latency-ms",
            str(int(LATENCY * 1000)),
            # Pipelines run as soon as pachd takes them: the bound below counts the one
            # InspectPipeline that confirms each left PIPELINE_STARTING.
            "--start-delay",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("sandbox serve did not start") from None
                time.sleep(0.05)
        repo = write(scratch / "creates", CREATES, seed=CREATES, url=url, insights_every=10**9)
        applied = reconciler(
            "apply",
            "--yes",
            "--format",
            "json",
            "--concurrency",
            str(CONCURRENCY),
            str(repo.folder),
        )
        outcome = json.loads(applied.out)
    finally:
        server.terminate()
        server.wait(30)
    # A pipeline's create is two calls (CreatePipelineV2, then InspectPipeline: health).
    pipelines = sum(1 for i in repo.ids if i.startswith("pachyderm:Pipeline/"))
    ideal = max(2 * repo.depth * LATENCY, (CREATES + pipelines) * LATENCY / CONCURRENCY)
    return {
        "n": CREATES,
        "depth": repo.depth,
        "latency_ms": LATENCY * 1000,
        "concurrency": CONCURRENCY,
        "apply_seconds": outcome["duration"],
        "command_seconds": round(applied.seconds, 3),
        "rss_mb": round(applied.rss_mb, 1),
        "ideal_seconds": round(ideal, 3),
        "ratio": round(outcome["duration"] / ideal, 2),
        "result": outcome["result"],
    }


def size(n: int, scratch: Path) -> dict[str, Any]:
    repo = write(scratch / f"n{n}", n, seed=n)
    setup = reconciler("apply", "--yes", "--concurrency", "32", str(repo.folder))
    print(f"  N={n}: applied in {setup.seconds:.1f}s (setup)", flush=True)
    plans = no_op_plans(repo)
    print(f"  N={n}: no-op plans {plans}", flush=True)
    changes = k_changes(repo)
    print(f"  N={n}: K changes {changes}", flush=True)
    return {
        "n": n,
        "depth": repo.depth,
        "setup_seconds": round(setup.seconds, 1),
        "no_op_plan": plans,
        "k_changes": changes,
    }


def goals(sizes: dict[int, dict[str, Any]], creates: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def goal(name: str, value: float, limit: float, unit: str = "") -> None:
        found.append(
            {"goal": name, "value": value, "limit": limit, "unit": unit, "met": value <= limit}
        )

    big = max(sizes)
    plan = sizes[big]["no_op_plan"]
    goal(f"warm no-op plan, N={big}", plan["warm"]["seconds"], 2.0, "s")
    goal(f"cold no-op plan, N={big}", plan["cold"]["seconds"], 5.0, "s")
    goal(
        f"warm plan / floor, N={big}",
        round(plan["warm"]["seconds"] / plan["floor"]["seconds"], 2),
        1.5,
        "x",
    )
    if 1000 in sizes and big != 1000:
        small = sizes[1000]["no_op_plan"]["warm"]["seconds"]
        goal(
            f"time({big}) / time(1000), warm plan",
            round(plan["warm"]["seconds"] / small, 2),
            big / 1000 * 1.1,
            "x",
        )
    goal(
        f"peak RSS, no-op plan, N={big}",
        max(plan["warm"]["rss_mb"], plan["cold"]["rss_mb"]),
        300,
        "MB",
    )
    for n, data in sorted(sizes.items()):
        plan_data = data["no_op_plan"]
        goal(
            f"reads on a no-op plan, N={n} ({plan_data['projects']} projects)",
            plan_data["reads"],
            10 + plan_data["projects"],
            "calls",
        )
        changes = data["k_changes"]
        goal(
            f"mutating calls for K={changes['k']} changes, N={n}",
            changes["ours"]["mutating"],
            changes["k"],
            "calls",
        )
        goal(
            f"restarts of untouched resources, N={n}",
            changes["ours"]["restarts_of_untouched"],
            0,
            "",
        )
    goal("apply 1,000 creates / ideal bound", creates["ratio"], 1.3, "x")
    return found


def table(report: dict[str, Any]) -> str:
    rows = [
        "| scenario | N | wall s | peak RSS MB | reads | mutating | restarts |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, data in sorted(report["sizes"].items(), key=lambda item: int(item[0])):
        plan = data["no_op_plan"]
        for name in ("cold", "warm"):
            rows.append(
                f"| {name} no-op plan | {n} | {plan[name]['seconds']} |"
                f" {plan[name]['rss_mb']} | {plan['reads']} | {plan['mutating']} | 0 |"
            )
        rows.append(
            f"| floor (read, list, compare) | {n} | {plan['floor']['seconds']} |"
            f" {plan['floor']['rss_mb']} | 6 | 0 | 0 |"
        )
        changes = data["k_changes"]
        for who in ("ours", "naive"):
            m = changes[who]
            label = f"apply K={changes['k']} changes" if who == "ours" else "naive CI script"
            rows.append(
                f"| {label} | {n} | {m['seconds']} | {m['rss_mb']} | {m['reads']} |"
                f" {m['mutating']} | {m['restarts']} |"
            )
    c = report["creates"]
    rows.append(
        f"| apply {c['n']} creates, {c['latency_ms']:g} ms/call, concurrency"
        f" {c['concurrency']} | {c['n']} | {c['apply_seconds']} (ideal"
        f" {c['ideal_seconds']}) | {c['rss_mb']} | | {c['n']} | 0 |"
    )
    rows += ["", "| goal | value | limit | met |", "| --- | ---: | ---: | --- |"]
    for g in report["goals"]:
        rows.append(
            f"| {g['goal']} | {g['value']} {g['unit']} | {g['limit']:g} {g['unit']} |"
            f" {'yes' if g['met'] else '**no**'} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as scratch:
        measured = {n: size(n, Path(scratch)) for n in sizes}
        creates = creates_with_latency(Path(scratch))
        print(f"  creates with latency: {creates}", flush=True)
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "sizes": {str(n): data for n, data in measured.items()},
        "creates": creates,
        "goals": goals(measured, creates),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    markdown = table(report)
    put_section(
        options.out.with_name(options.out.stem.replace("results", "RESULTS") + ".md"),
        "plans",
        markdown,
    )
    print(markdown)
    print(f"total {report['total_seconds']} s; written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
