"""A manifests folder holding the real equities package, and a sandbox to apply it to,
reached in-process or over uvicorn."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from reconciler.sandbox import SandboxOptions
from reconciler.sandbox.insights import InsightsOptions
from tests.conftest import DATA, run_cli
from tests.pachyderm.helpers import Call, Sandbox, served

EQUITIES = DATA / "insights" / "equities-package"
FAST = InsightsOptions(deploy_delay=0.05)


def package_manifest(version: str = "0.0.1") -> str:
    return (
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        f"spec: {{version: '{version}', source: ../packages/equities}}\n"
    )


def deployment_manifest(extra: str = "", name: str = "equities") -> str:
    return (
        f"apiVersion: insights/v1\nkind: Deployment\nmetadata: {{name: {name}}}\n"
        f"spec:\n  package: equities\n{extra}"
    )


class World:
    """The equities package in `folder/packages/equities`, its manifests in
    `folder/manifests/`, and the sandbox they are applied to."""

    def __init__(
        self, root: Path, over_http: bool, stack: ExitStack, options: SandboxOptions
    ) -> None:
        self.folder = root / "repo"
        shutil.copytree(EQUITIES, self.folder / "packages" / "equities")
        self.sandbox = Sandbox(root / "sandbox.db", options)
        self.url = "embedded"
        self.connector: Sandbox | None = self.sandbox
        if over_http:
            self.url = stack.enter_context(served(self.sandbox.recorder))
            self.connector = None
        self.config()
        self.manifests(package_manifest(), deployment_manifest())

    def config(self, extra: str = "", *, prune: bool = False) -> None:
        (self.folder / "reconciler.yaml").write_text(
            "manifests: [manifests/]\nstate: sqlite:///state.db\n"
            f"prune: {'true' if prune else 'false'}\n"
            f"targets:\n  insights: {{provider: insights, url: '{self.url}'{extra}}}\n"
        )

    def manifests(self, *documents: str) -> None:
        folder = self.folder / "manifests"
        folder.mkdir(exist_ok=True)
        (folder / "insights.yaml").write_text("---\n".join(documents))

    def package_file(self, relative: str) -> Path:
        return self.folder / "packages" / "equities" / relative

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.package_file(relative)
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def set_version(self, version: str) -> None:
        self.edit("manifest.yaml", "version: 0.0.1", f"version: {version}")

    def run(self, *args: str) -> int:
        return run_cli(*args, str(self.folder), connector=self.connector)

    def apply(self, *args: str) -> int:
        return self.run("apply", "--yes", *args)

    def stats(self) -> dict[str, Any]:
        return self.sandbox.stats()

    def reset(self) -> None:
        self.sandbox.reset()

    def outside(self, method: str, path: str, **params: str) -> Any:
        """A call to the Package Manager made by someone else (a person with `kxi pm`):
        not recorded with reconciler's calls; answers the payload."""

        async def call() -> Any:
            transport = httpx.ASGITransport(app=self.sandbox.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                answer = await client.request(method, "/packagemanager/v2" + path, params=params)
                answer.raise_for_status()
                return answer.json()["data"] if answer.content else None

        return asyncio.run(call())

    def deployment_id(self) -> str:
        return str(self.outside("GET", "/deployments")[0]["id"])

    def mutating(self) -> list[Call]:
        return self.sandbox.recorder.mutating()

    def operations(self) -> list[str]:
        """Each mutating call as `METHOD /path` with ids replaced, in order."""
        found = []
        for call in self.mutating():
            path = call.path.removeprefix("/packagemanager/v2")
            parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
            found.append(f"{call.verb} {'/'.join(parts)}")
        return found


def worlds(root: Path, over_http: bool, options: SandboxOptions | None = None) -> Iterator[World]:
    with ExitStack() as stack:
        yield World(root, over_http, stack, options or SandboxOptions(insights=FAST))
