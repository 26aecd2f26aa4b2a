"""Soak benchmark (issue 21): 1,000 scheduled reconciles by one `serve`, its memory and
open files flat (growth under 5% after warm-up), its event loop answering throughout.

One serve process follows a small source (a project, three repos, a pipeline) on a
sandbox in its own process, on a schedule of 50 ms, in apply mode; every 10th run a
change is made so that applies, not only plans, are soaked. After `--warmup` runs its
resident memory and open files are the baseline; at the end they are compared with it.
Meanwhile `/healthz` is asked every 50 ms: the slowest answers say whether runs block the
event loop. Writes bench/results-soak.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.replicas import sandbox  # noqa: E402
from bench.report import publish  # noqa: E402
from tests.pachyderm.helpers import free_port  # noqa: E402
from tests.server.serving import wait_for as wait  # noqa: E402

MANIFESTS = """apiVersion: pachyderm/v1
kind: Project
metadata: {name: soak}
---
apiVersion: pachyderm/v1
kind: Repo
metadata: {name: a, project: soak}
spec: {description: DESCRIPTION}
---
apiVersion: pachyderm/v1
kind: Repo
metadata: {name: b, project: soak}
---
apiVersion: pachyderm/v1
kind: Repo
metadata: {name: c, project: soak}
---
apiVersion: pachyderm/v1
kind: Pipeline
metadata: {name: edges, project: soak}
spec:
  transform: {image: 'alpine:3.20', cmd: [sh]}
  input: {pfs: {repo: a, glob: /*}}
"""


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_files(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def settled(pid: int) -> tuple[int, int]:
    """Memory and open files at their lowest over 100 ms: between runs, not during one
    (a run holds its connections and database files open while it goes)."""
    seen = []
    for _ in range(20):
        seen.append((resident_kib(pid), open_files(pid)))
        time.sleep(0.005)
    return min(m for m, _ in seen), min(f for _, f in seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results-soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with sandbox(folder, 0) as url:
            source = folder / "source"
            source.mkdir()
            (source / "reconciler.yaml").write_text(
                f"manifests: [.]\nstate: sqlite:///{folder / 'state.db'}\n"
                f"targets:\n  pachyderm: {{provider: pachyderm, url: '{url}'}}\n"
            )
            manifests = source / "soak.yaml"
            manifests.write_text(MANIFESTS.replace("DESCRIPTION", "v0"))
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-m", "reconciler", "serve", str(source), "--port"]
            command += [str(port), "--mode", "apply", "--interval", "50ms"]
            env = {**os.environ, "RECONCILER_CACHE": str(folder / "cache")}
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            answers: list[float] = []
            done = threading.Event()

            def ask() -> None:
                with httpx.Client(timeout=10) as client:
                    while not done.is_set():
                        started = time.perf_counter()
                        client.get(f"{base}/healthz")
                        answers.append(time.perf_counter() - started)
                        time.sleep(0.05)

            def runs() -> int:
                try:
                    last = httpx.get(f"{base}/status", timeout=10).json()["last_run"]
                except (httpx.TransportError, ValueError):
                    return 0
                return int(last["number"]) if last else 0

            try:
                wait("serve", lambda: runs() >= 1, 60)
                asker = threading.Thread(target=ask, daemon=True)
                asker.start()
                samples: list[tuple[int, int, int]] = []
                started = time.monotonic()
                changed = 0
                while (count := runs()) < args.runs:
                    if count // 10 > changed:
                        changed = count // 10
                        manifests.write_text(MANIFESTS.replace("DESCRIPTION", f"v{changed}"))
                    if count >= args.warmup and (not samples or count - samples[-1][0] >= 50):
                        samples.append((count, resident_kib(process.pid), open_files(process.pid)))
                    time.sleep(0.05)
                samples.append((runs(), *settled(process.pid)))
                seconds = time.monotonic() - started
            finally:
                done.set()
                process.terminate()
                process.wait(60)
    base_rss, base_fds = samples[0][1], samples[0][2]
    end_rss, end_fds = samples[-1][1], samples[-1][2]
    rss_growth = (end_rss - base_rss) / base_rss
    fds_growth = (end_fds - base_fds) / base_fds
    ordered = sorted(answers)
    slowest = ordered[-1]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    met = rss_growth < 0.05 and fds_growth < 0.05
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "runs": samples[-1][0],
        "seconds": round(seconds, 1),
        "warmup": args.warmup,
        "rss_kib": {"after_warmup": base_rss, "end": end_rss, "growth": round(rss_growth, 4)},
        "open_files": {"after_warmup": base_fds, "end": end_fds, "growth": round(fds_growth, 4)},
        "samples": samples,
        "healthz_s": {
            "count": len(answers),
            "median": round(statistics.median(ordered), 4),
            "p99": round(p99, 4),
            "max": round(slowest, 4),
        },
        "met": met,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    markdown = "\n".join(
        [
            f"Soak (`bench/soak.py`, {report['date']}): {report['runs']} scheduled reconciles"
            f" in {seconds:.0f} s, one in ten applying a change:",
            "",
            "| measure | after warm-up | at the end | growth |",
            "| --- | ---: | ---: | ---: |",
            f"| resident memory | {base_rss / 1024:.1f} MiB | {end_rss / 1024:.1f} MiB |"
            f" {rss_growth:+.1%} |",
            f"| open files | {base_fds} | {end_fds} | {fds_growth:+.1%} |",
            "",
            f"`/healthz` asked {len(answers)} times during the runs: median"
            f" {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, slowest"
            f" {slowest * 1000:.1f} ms. Growth under 5%: {'met' if met else 'NOT met'}.",
        ]
    )
    publish(args.out, "soak", markdown)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
