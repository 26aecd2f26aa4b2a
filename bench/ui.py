"""Web UI benchmark: each page of `reconciler serve` at N resources (issue 20: under a
second at 10,000), over real HTTP on loopback.

A serve app holds N synthetic resource statuses (pipelines in chains, 1% out of sync,
0.1% degraded) and a state store with 200 applying runs; each page is fetched `--tries`
times after one warm-up, and the median and the slowest are reported. Run with `make
bench` (N = 10,000) or `make bench-quick` (N = 1,000). Writes bench/results-ui.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.manifests import ResourceId
from reconciler.providers.base import Health
from reconciler.resource_status import ResourceStatus
from reconciler.server import ServeOptions, create_app
from reconciler.server.runs import Snapshot
from reconciler.state import SqliteStore
from tests.pachyderm.helpers import served

ROOT = Path(__file__).resolve().parent
LIMIT = 1.0
"""Seconds a page may take at 10,000 resources."""


def statuses(count: int) -> tuple[ResourceStatus, ...]:
    found = []
    for index in range(count):
        rid = ResourceId("pachyderm", "Pipeline", f"proj{index // 70}/p{index % 70}")
        chained = index % 70
        uses = (ResourceId("pachyderm", "Pipeline", f"proj{index // 70}/p{chained - 1}"),)
        used_by = (ResourceId("pachyderm", "Pipeline", f"proj{index // 70}/p{chained + 1}"),)
        sync = "out_of_sync" if index % 100 == 7 else "synced"
        health = Health("degraded", "CrashLoopBackOff") if index % 1000 == 3 else Health("healthy")
        found.append(
            ResourceStatus(
                rid,
                sync,  # type: ignore[arg-type]
                health,
                action="patch" if sync == "out_of_sync" else None,
                uses=uses if chained else (),
                used_by=used_by if chained < 69 else (),
            )
        )
    return tuple(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--tries", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "results-ui.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        store = SqliteStore(folder / "state.db")
        for number in range(200):
            run = store.begin_run("apply", revision=f"{number:040x}", profile=None, plan=None)
            actions = [{"id": "pachyderm:Pipeline/proj0/p1", "action": "patch", "status": "ok"}]
            store.finish_run(run, "succeeded", actions)
        store.close()
        options = ServeOptions(source=scratch, ui_public=True)
        app = create_app(options, lambda *a: None)  # type: ignore[arg-type]
        runner = app.state.server.runner
        pages = {
            "overview": "/",
            "resources": "/resources",
            "resources, filtered": "/resources?sync=out_of_sync&q=proj1",
            "resources, last page": f"/resources?page={args.resources // 100}",
            "resource": "/resources/pachyderm%3APipeline%2Fproj0%2Fp1",
            "runs": "/runs",
            "graph of a neighbourhood": "/graph?resource=pachyderm:Pipeline/proj3/p30",
            "graph of the target (refused above 400)": "/graph?target=pachyderm",
        }
        results = {}
        with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            while runner.last is None:  # the startup run (of an empty folder) is over
                time.sleep(0.01)
            runner.resources = Snapshot(1, time.time(), statuses(args.resources))
            runner.targets = ("pachyderm",)
            runner.state = (f"sqlite:///{folder / 'state.db'}", folder)
            for name, path in pages.items():
                client.get(path).raise_for_status()
                times = []
                for _ in range(args.tries):
                    started = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append(time.perf_counter() - started)
                results[name] = {"median_s": statistics.median(times), "slowest_s": max(times)}
                print(
                    f"{name:<42} N={args.resources}: median {results[name]['median_s']:.3f} s,"
                    f" slowest {results[name]['slowest_s']:.3f} s"
                )
    met = all(r["slowest_s"] < LIMIT for r in results.values())
    print(f"every page under {LIMIT:g} s at N={args.resources}: {'yes' if met else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"resources": args.resources, "pages": results, "met": met}, indent=2) + "\n"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
