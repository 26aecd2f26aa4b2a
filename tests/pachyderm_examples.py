"""Pachyderm's own example pipeline specs, wrapped as one manifests folder.

Specs from one example folder share a project, so their chains stay chains (an upstream
pipeline's output repo is read by name); a name used twice in a folder moves the second
spec to a sibling project. Inputs that no pipeline of the project makes become Repo
manifests; every secret a spec uses becomes a Secret manifest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.manifests.documents import read_documents

BROKEN_JSON = {
    # Streams of two JSON documents separated by '---': one manifest file holds one JSON
    # document, so reconciler refuses them at that line; pachctl reads them with a YAML
    # decoder (ppsutil/decoder.go, SpecReader) as two pipeline specs each.
    "ml__tensorflow__pre-processing_and_generation.pipeline.json": 20,
    "ml__tensorflow__training_and_export.pipeline.json": 24,
    "ml__tensorflow__training_and_export_gpu.pipeline.json": 34,
}
TEMPLATE = "run__config__pipeline.pipeline.json"
NO_GLOB = "redshift__pipeline.pipeline.json"
"""Counted valid by the reference notes, but its pfs input has no glob: pachd refuses it
("input must specify a glob", validateInput in pachd's pps api_server.go), and so do we."""


def valid_examples(reference: Path) -> list[Path]:
    """The example files that hold valid specs (streams included), as pachctl reads them."""
    folder = reference / "pachyderm" / "examples"
    return [p for p in sorted(folder.iterdir()) if p.name not in (TEMPLATE, NO_GLOB)]


def load_specs(path: Path) -> list[dict[str, Any]]:
    """Every spec of a file as pachctl reads it: a stream of documents (YAML's '---'
    separates JSON documents too), the way ppsutil/decoder.go's SpecReader does."""
    if path.name not in BROKEN_JSON:
        return [load_spec(path)]
    specs = [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in specs)
    return specs


def load_spec(path: Path) -> dict[str, Any]:
    (document,) = read_documents(path, path.name)
    assert isinstance(document.data, dict)
    return document.data


def _project_name(folder: str, index: int) -> str:
    # Short enough that <project>-<pipeline>-v99 stays a Kubernetes name (63) for every
    # example's pipeline name, as pachd requires (api_server.go validatePipelineRequest).
    name = re.sub(r"[^a-zA-Z0-9_-]", "-", folder.replace("__", "-"))[:30]
    return name if index == 0 else f"{name}-{index + 1}"


def pfs_inputs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pfs" and isinstance(value, dict):
                yield value
            else:
                yield from pfs_inputs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pfs_inputs(item)


def _secrets(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    transform = spec.get("transform") or {}
    for mount in transform.get("secrets") or []:
        yield mount["name"], mount.get("key") or "value"
    egress = ((spec.get("egress") or {}).get("sqlDatabase") or {}).get("secret")
    if egress:
        yield egress["name"], egress.get("key") or "value"


def manifests(paths: list[Path]) -> list[dict[str, Any]]:
    """Project, Repo, Secret and Pipeline manifests for the given spec files."""
    projects: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        for spec in load_specs(path):
            folder = "__".join(path.name.split("__")[:-1]) or path.name.split(".")[0]
            name = spec["pipeline"]["name"]
            index = 0
            while name in projects.setdefault(_project_name(folder, index), {}):
                index += 1
            projects[_project_name(folder, index)][name] = spec
    documents: list[dict[str, Any]] = []
    secrets: dict[str, set[str]] = {}
    repos: set[tuple[str, str]] = set()
    for project, pipelines in sorted(projects.items()):
        documents.append(
            {"apiVersion": "pachyderm/v1", "kind": "Project", "metadata": {"name": project}}
        )
        for name, spec in sorted(pipelines.items()):
            body = {k: v for k, v in spec.items() if k != "pipeline"}
            documents.append(
                {
                    "apiVersion": "pachyderm/v1",
                    "kind": "Pipeline",
                    "metadata": {"name": name, "project": project},
                    "spec": body,
                }
            )
            for pfs in pfs_inputs(body.get("input")):
                source = pfs.get("project", project)
                if source != project or pfs["repo"] not in pipelines:
                    repos.add((source, pfs["repo"]))
            for secret, key in _secrets(body):
                secrets.setdefault(secret, set()).add(key)
    for project in sorted({p for p, _ in repos} - set(projects)):
        documents.append(
            {"apiVersion": "pachyderm/v1", "kind": "Project", "metadata": {"name": project}}
        )
    for project, repo in sorted(repos):
        documents.append(
            {
                "apiVersion": "pachyderm/v1",
                "kind": "Repo",
                "metadata": {"name": repo, "project": project},
                "spec": {"description": f"input of {project}"},
            }
        )
    for secret, keys in sorted(secrets.items()):
        documents.append(
            {
                "apiVersion": "pachyderm/v1",
                "kind": "Secret",
                "metadata": {"name": secret},
                "spec": {"data": {key: f"${{env:EXAMPLE_SECRET}}-{key}" for key in sorted(keys)}},
            }
        )
    return documents


def write_folder(folder: Path, paths: list[Path], config: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reconciler.yaml").write_text(config)
    text = "\n---\n".join(json.dumps(d, indent=2) for d in manifests(paths))
    (folder / "examples.yaml").write_text(text + "\n")
    return folder
