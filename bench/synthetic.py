"""Synthetic manifest repositories of N resources, deterministic by seed.

Shared by the benchmarks and the fault, crash and concurrency tests. A repository holds
two targets, `pachyderm` and `insights`, and is made of groups:
- a Pachyderm project with two input repos and a chain of 1 to 6 pipelines, the last
  of which joins or crosses the chain with the second repo;
- now and then, a kdb Insights package built from a small folder, and its deployment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Repository:
    folder: Path
    resources: int
    ids: tuple[str, ...]
    depth: int
    """The longest pipeline chain: project, repo, then up to 6 pipelines."""


def _project(name: str) -> str:
    return (
        f"apiVersion: pachyderm/v1\nkind: Project\nmetadata: {{name: {name}}}\n"
        f"spec: {{description: synthetic project {name}}}\n"
    )


def _repo(project: str, name: str) -> str:
    return (
        f"apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: {name}, project: {project}}}\n"
        f"spec: {{description: input {name}}}\n"
    )


def _pipeline(project: str, name: str, input_: str, stage: int) -> str:
    return (
        "apiVersion: pachyderm/v1\nkind: Pipeline\n"
        f"metadata:\n  name: {name}\n  project: {project}\n  labels: {{stage: s{stage}}}\n"
        "spec:\n  transform:\n    image: busybox:1.36\n"
        f"    cmd: [sh, -c, 'cp -r /pfs/* /pfs/out/ # {name}']\n"
        f"  input:\n{input_}"
    )


def _package_files(folder: Path, name: str) -> None:
    (folder / "pipelines").mkdir(parents=True, exist_ok=True)
    (folder / "src").mkdir(exist_ok=True)
    (folder / "manifest.yaml").write_text(
        f"name: {name}\nversion: 1.0.0\ndependencies: []\nmetadata: {{}}\n"
        "pipelines:\n  rt:\n    file: pipelines/rt.yaml\npatches: []\n"
    )
    (folder / "pipelines" / "rt.yaml").write_text(
        "name: rt\nbase: q\nsource: rt\nspec: src/rt.q\nminWorkers: 1\nmaxWorkers: 1\n"
    )
    (folder / "src" / "rt.q").write_text(f"// {name}\n.qsp.run .qsp.read.fromStream[`t]\n")


def write(
    folder: Path,
    resources: int,
    *,
    seed: int = 0,
    url: str = "embedded",
    state: str = "sqlite:///state.db",
    prefix: str = "",
    insights_every: int = 4,
    target_options: str = "",
) -> Repository:
    """A repository of exactly `resources` resources in `folder` (created)."""
    chance = random.Random(seed)
    extra = f", {target_options}" if target_options else ""
    manifests = folder / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (folder / "reconciler.yaml").write_text(
        f"manifests: [manifests/]\nstate: {state}\nprune: false\n"
        f"targets:\n  pachyderm: {{provider: pachyderm, url: '{url}'{extra}}}\n"
        f"  insights: {{provider: insights, url: '{url}'{extra}}}\n"
    )
    ids: list[str] = []
    depth = 0
    group = 0
    left = resources
    while left > 0:
        documents: list[str] = []
        if group % insights_every == insights_every - 1 and left >= 2:
            name = f"{prefix}pkg{group}"
            _package_files(folder / "packages" / name, name)
            documents.append(
                f"apiVersion: insights/v1\nkind: Package\nmetadata: {{name: {name}}}\n"
                f"spec: {{version: 1.0.0, source: ../packages/{name}}}\n"
            )
            documents.append(
                f"apiVersion: insights/v1\nkind: Deployment\nmetadata: {{name: {name}}}\n"
                f"spec:\n  package: {name}\n  env: {{rt: {{LOG_LEVEL: info}}}}\n"
            )
            ids += [f"insights:Package/{name}", f"insights:Deployment/{name}"]
        else:
            project = f"{prefix}proj{group}"
            documents.append(_project(project))
            ids.append(f"pachyderm:Project/{project}")
            for repo in ("raw", "side")[: max(0, min(2, left - 1))]:
                documents.append(_repo(project, repo))
                ids.append(f"pachyderm:Repo/{project}/{repo}")
            chain = min(max(0, left - len(documents)), chance.randint(1, 6))
            upstream = "raw"
            for stage in range(chain):
                name = f"s{stage}"
                if stage == chain - 1 and chain > 1:
                    how = chance.choice(("join", "cross"))
                    glob, extra = ("/(*)", ", joinOn: '$1'") if how == "join" else ("/*", "")
                    input_ = (
                        f"    {how}:\n"
                        f"      - pfs: {{repo: {upstream}, glob: '{glob}'{extra}}}\n"
                        f"      - pfs: {{repo: side, glob: '{glob}'{extra}}}\n"
                    )
                else:
                    input_ = f"    pfs: {{repo: {upstream}, glob: '/*'}}\n"
                documents.append(_pipeline(project, name, input_, stage))
                ids.append(f"pachyderm:Pipeline/{project}/{name}")
                upstream = name
            depth = max(depth, 2 + chain)
        (manifests / f"g{group:05d}.yaml").write_text("---\n".join(documents))
        left -= len(documents)
        group += 1
    return Repository(folder, resources, tuple(ids), depth)
