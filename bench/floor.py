"""The floor: the least work a no-op plan can do, for comparison with `reconciler plan`.

Read every manifest file with ruamel.yaml's C loader (no validation, no positions), make
the same list calls to the same embedded sandbox, read pachd's cluster defaults and each
project's defaults (a pipeline cannot be compared correctly without them: see
`reconciler/providers/pachyderm/defaults.py`), and compare each resource's spec with
what the platform shows as canonical JSON. No normalisation, no graph, no state:
whatever reconciler does beyond this is the price of being right.

    python bench/floor.py REPOSITORY
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from reconciler.sandbox import create_app

PACHYDERM_LISTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pfs_v2.API/ListProject", {}),
    ("pfs_v2.API/ListRepo", {"type": "user"}),
    ("pps_v2.API/ListSecret", {}),
    ("pps_v2.API/ListPipeline", {"details": True}),
    ("pps_v2.API/GetClusterDefaults", {}),
)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def read(folder: Path) -> dict[str, Any]:
    loader = YAML(typ="safe", pure=False)
    desired: dict[str, Any] = {}
    for file in sorted((folder / "manifests").rglob("*.yaml")):
        for document in loader.load_all(file.read_text()):
            if isinstance(document, dict) and "kind" in document:
                metadata = document.get("metadata") or {}
                key = f"{document['kind']}/{metadata.get('project', '')}/{metadata.get('name')}"
                desired[key] = document.get("spec") or {}
    return desired


def lines(text: str) -> list[Any]:
    return [json.loads(line).get("result") for line in text.splitlines() if line.strip()]


async def observe(folder: Path) -> dict[str, Any]:
    app = create_app(folder / ".reconciler" / "sandbox.db")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        answers = await asyncio.gather(
            client.get("/packagemanager/v2/packages"),
            client.get("/packagemanager/v2/deployments"),
            *(client.post(f"/api/{rpc}", json=body) for rpc, body in PACHYDERM_LISTS),
        )
        projects = [item.get("project", {}) for item in lines(answers[2].text)]
        defaults = await asyncio.gather(
            *(
                client.post("/api/pps_v2.API/GetProjectDefaults", json={"project": project})
                for project in projects
            )
        )
    observed: dict[str, Any] = {"defaults": [d.json() for d in defaults]}
    # The Package Manager's answers are Value wrappers: the payload is `data`.
    for item in answers[0].json()["data"]:
        observed[f"Package//{item.get('name')}"] = item
    for item in answers[1].json()["data"]:
        observed[f"Deployment//{item.get('package')}"] = item
    for item in lines(answers[5].text):
        pipeline = item.get("pipeline", {})
        key = f"Pipeline/{pipeline.get('project', {}).get('name', '')}/{pipeline.get('name')}"
        observed[key] = item.get("details", {})
    for item in lines(answers[3].text):
        repo = item.get("repo", {})
        observed[f"Repo/{repo.get('project', {}).get('name', '')}/{repo.get('name')}"] = item
    for item in lines(answers[2].text):
        observed[f"Project//{item.get('project', {}).get('name')}"] = item
    return observed


def main(folder: Path) -> int:
    desired = read(folder)
    observed = asyncio.run(observe(folder))
    same = sum(
        1 for key, spec in desired.items() if canonical(spec) == canonical(observed.get(key))
    )
    print(json.dumps({"desired": len(desired), "observed": len(observed), "equal": same}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
