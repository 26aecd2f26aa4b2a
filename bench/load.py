"""Loading benchmark: N small resource documents across F files, loaded and validated.

Goal (issue 2): 10,000 documents across 500 files loaded, validated and graphed in
<= 1.5 s on the project's 2-core machine. Run with `make bench` (or `make bench-quick`
for 1,000). Prints a line per run and writes bench/results-load.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reconciler.graph import build
from reconciler.manifests import LoadOptions, load

ROOT = Path(__file__).resolve().parent


def generate(folder: Path, documents: int, files: int) -> None:
    """Projects of repos and pipeline chains, plus packages and deployments: deterministic."""
    (folder / "pkg.kxi").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    per_file = documents // files
    for f in range(files):
        docs = []
        project = f"proj{f}"
        docs.append(
            f"apiVersion: pachyderm/v1\nkind: Project\nmetadata: {{name: {project}}}\n"
            f"spec: {{description: project {f}}}\n"
        )
        docs.append(
            f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: raw, project: {project}}}\n"
        )
        docs.append(
            f"apiVersion: insights/v1\nkind: Package\nmetadata: {{name: pkg{f}}}\n"
            "spec: {version: 1.0.0, artifact: pkg.kxi}\n"
        )
        docs.append(
            f"apiVersion: insights/v1\nkind: Deployment\nmetadata: {{name: dep{f}}}\n"
            f"spec:\n  package: pkg{f}\n  env: {{rt: {{LOG_LEVEL: info}}}}\n"
        )
        upstream = "raw"
        for i in range(per_file - len(docs)):
            name = f"p{i}"
            docs.append(
                "apiVersion: pachyderm/v1\nkind: Pipeline\n"
                f"metadata:\n  name: {name}\n  project: {project}\n  labels: {{team: t{f % 7}}}\n"
                "spec:\n  transform:\n    image: busybox:1.36\n"
                f"    cmd: [sh, -c, 'echo {i}']\n"
                f"  input:\n    pfs: {{repo: {upstream}, glob: '/*'}}\n"
                "  parallelismSpec: {constant: 1}\n"
            )
            upstream = name if i % 6 != 5 else "raw"  # chains of depth up to 6
        (folder / f"f{f:04d}.yaml").write_text("---\n".join(docs))


def measure(folder: Path) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    manifests = load(folder, LoadOptions(env={}))
    build(manifests.resources)
    return time.perf_counter() - start, len(manifests.resources)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--goal", type=float, default=1.5, help="seconds, at 10,000 documents")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, args.documents, args.files)
        timings = []
        count = 0
        for _ in range(args.runs):
            seconds, count = measure(folder)
            timings.append(seconds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best, median = min(timings), statistics.median(timings)
    goal = args.goal * args.documents / 10_000
    verdict = "meets" if median <= goal else "MISSES"
    print(
        f"load+validate+graph: {count} documents in {args.files} files: "
        f"median {median:.3f} s, best {best:.3f} s, peak RSS {peak_mb:.0f} MB "
        f"({verdict} the goal of {goal:.2f} s)"
    )
    results_file = ROOT / "results-load.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results[str(args.documents)] = {
        "documents": count,
        "files": args.files,
        "median_s": round(median, 3),
        "best_s": round(best, 3),
        "peak_rss_mb": round(peak_mb),
        "goal_s": goal,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
    }
    results_file.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
