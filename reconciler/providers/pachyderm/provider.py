"""The Pachyderm provider: observes a pachd with four calls and applies actions to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.diff import Change
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.manifests import Resource, ResourceId
from reconciler.manifests.kinds.pipeline_rules import OURS, create_pipeline_request
from reconciler.manifests.values import Sensitive
from reconciler.providers.base import Applied, Check, Desired, Observation, Observed
from reconciler.providers.http import HttpError
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.providers.pachyderm.normal import (
    DEFAULT_PROJECT,
    canonical,
    cron_repos,
    input_repos,
    secret_names,
    with_defaults,
)
from reconciler.providers.pachyderm.policies import PachydermPolicies, restarts


class PachydermProvider(PachydermPolicies):
    """Implements `reconciler.providers.base.Provider` for one pachd."""

    def __init__(self, target: str, client: PachdClient) -> None:
        self._target = target
        self.client = client

    @property
    def target(self) -> str:
        return self._target

    # --- desired -----------------------------------------------------------------------

    def desire(self, resource: Resource) -> Desired:
        data = resource.spec.spec_data()
        kind = resource.kind
        if kind == "Secret":
            spec: dict[str, Any] = {"type": data.get("type") or "Opaque"}
            if data.get("data"):
                spec["data"] = dict(data["data"])
            return Desired(resource, spec)
        if kind != "Pipeline":
            return Desired(resource, canonical(data))
        project, name = _split(resource.id)
        ours = {key: data.pop(key) for key in OURS if data.get(key)}
        return Desired(resource, {**with_defaults(canonical(data), project, name), **ours})

    # --- observed ----------------------------------------------------------------------

    async def observe(self) -> Observation:
        projects, repos, secrets, pipelines = await asyncio.gather(
            self.client.list_projects(),
            self.client.list_repos(),
            self.client.list_secrets(),
            self.client.list_pipelines(),
        )
        found: dict[ResourceId, Observed] = {}
        for info in projects:
            name = str((info.get("project") or {}).get("name") or "")
            rid = ResourceId(self._target, "Project", name)
            found[rid] = Observed(rid, canonical({"description": info.get("description")}))
        for info in secrets:
            name = str((info.get("secret") or {}).get("name") or "")
            rid = ResourceId(self._target, "Secret", name)
            found[rid] = Observed(rid, {"type": info.get("type") or "Opaque"})
        made_by_pachd: set[tuple[str, str]] = set()
        pipeline_names: set[tuple[str, str]] = set()
        for info in pipelines:
            observed = self._pipeline(info)
            project, name = _split(observed.id)
            pipeline_names.add((project, name))
            made_by_pachd.add((project, name))
            made_by_pachd.update((project, cron) for cron in cron_repos(observed.spec, name))
            found[observed.id] = observed
        for info in repos:
            repo = info.get("repo") or {}
            project = str((repo.get("project") or {}).get("name") or DEFAULT_PROJECT)
            name = str(repo.get("name") or "")
            if (project, name) in made_by_pachd or repo.get("type", "user") != "user":
                continue  # output and cron repos belong to their pipeline
            rid = ResourceId(self._target, "Repo", f"{project}/{name}")
            spec = canonical({"description": info.get("description")})
            found[rid] = Observed(rid, spec, tuple(self._project_use(project)))
        for rid, observed in list(found.items()):
            if rid.kind == "Pipeline":
                found[rid] = Observed(
                    rid,
                    observed.spec,
                    tuple(self._pipeline_uses(observed, pipeline_names)),
                    observed.status,
                )
        return Observation(self._target, found)

    def _pipeline(self, info: Mapping[str, Any]) -> Observed:
        pipeline = info.get("pipeline") or {}
        project = str((pipeline.get("project") or {}).get("name") or DEFAULT_PROJECT)
        name = str(pipeline.get("name") or "")
        raw = info.get("effectiveSpecJson") or info.get("userSpecJson") or "{}"
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError:
            raise PermanentError(
                f"pachd sent pipeline {project}/{name} with a spec that is not JSON"
            ) from None
        if not isinstance(spec, dict):
            raise PermanentError(f"pachd sent pipeline {project}/{name} without a spec")
        spec.pop("pipeline", None)
        normal = with_defaults(canonical(spec), project, name)
        if info.get("stopped"):
            normal["stopped"] = True
        rid = ResourceId(self._target, "Pipeline", f"{project}/{name}")
        return Observed(rid, normal, status=str(info.get("state") or "") or None)

    def _project_use(self, project: str) -> list[ResourceId]:
        if project == DEFAULT_PROJECT:
            return []
        return [ResourceId(self._target, "Project", project)]

    def _pipeline_uses(
        self, observed: Observed, pipelines: set[tuple[str, str]]
    ) -> list[ResourceId]:
        project, _ = _split(observed.id)
        uses = self._project_use(project)
        for repo_project, repo in input_repos(observed.spec, project):
            kind = "Pipeline" if (repo_project, repo) in pipelines else "Repo"
            uses.append(ResourceId(self._target, kind, f"{repo_project}/{repo}"))
        uses += [ResourceId(self._target, "Secret", s) for s in secret_names(observed.spec)]
        return list(dict.fromkeys(uses))

    # --- actions -----------------------------------------------------------------------

    async def _describe(self, desired: Desired, *, update: bool) -> None:
        """Create a Project or Repo, or (update) change its description: all they hold."""
        description = str(desired.spec.get("description") or "")
        if desired.id.kind == "Project":
            await self.client.create_project(desired.id.name, description, update=update)
        else:
            project, name = _split(desired.id)
            await self.client.create_repo(project, name, description, update=update)

    async def create(self, desired: Desired) -> None:
        kind, spec = desired.id.kind, desired.spec
        if kind in ("Project", "Repo"):
            await self._describe(desired, update=False)
        elif kind == "Secret":
            data = {key: _clear(value) for key, value in (spec.get("data") or {}).items()}
            await self.client.create_secret(desired.id.name, str(spec["type"]), data)
        else:
            project, name = _split(desired.id)
            await self.client.create_pipeline(self._request(desired), update=False, reprocess=False)
            if spec.get("stopped"):
                await self.client.stop_pipeline(project, name)

    async def patch(self, desired: Desired, observed: Observed, changes: Sequence[Change]) -> None:
        kind, spec = desired.id.kind, desired.spec
        if kind in ("Project", "Repo"):
            await self._describe(desired, update=True)
        elif kind == "Pipeline":
            project, name = _split(desired.id)
            if restarts(changes):
                await self.client.create_pipeline(
                    self._request(desired),
                    update=True,
                    reprocess=bool(spec.get("reprocessOnUpdate")),
                )
            stopped = bool(spec.get("stopped"))
            if stopped != bool(observed.spec.get("stopped")):
                if stopped:
                    await self.client.stop_pipeline(project, name)
                else:
                    await self.client.start_pipeline(project, name)
        else:
            raise PermanentError(f"{desired.id}: a {kind} is never patched in place")

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None:
        if desired.id.kind != "Pipeline":
            raise PermanentError(f"{desired.id}: a {desired.id.kind} has nothing to restart")
        # An update with the same spec is how pachd restarts a pipeline's workers.
        await self.client.create_pipeline(self._request(desired), update=True, reprocess=False)

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        if rid.kind == "Project":
            await self.client.delete_project(rid.name)
        elif rid.kind == "Repo":
            await self.client.delete_repo(*_split(rid))
        elif rid.kind == "Secret":
            await self.client.delete_secret(rid.name)
        else:
            # The output repo and its data go with the pipeline: deletionPolicy Delete.
            await self.client.delete_pipeline(*_split(rid))

    async def diagnose(self) -> list[Check]:
        try:
            await self.client.list_projects()
        except RetryableError as exc:
            return [Check("reachable", False, str(exc))]
        except HttpError as exc:
            refused = exc.status in (401, 403) or exc.code in (7, 16)
            return [
                Check("reachable", True, "pachd answered"),
                Check("authenticated", not refused, str(exc)),
            ]
        except OperationalError as exc:
            return [Check("reachable", False, str(exc))]
        return [
            Check("reachable", True, "pachd answered"),
            Check("authenticated", True, "ListProject answered"),
        ]

    async def aclose(self) -> None:
        await self.client.aclose()

    def _request(self, desired: Desired) -> dict[str, Any]:
        """The manifest's spec as written (pachd fills in its own defaults)."""
        project, name = _split(desired.id)
        spec = _clear(desired.resource.spec.spec_data())
        return create_pipeline_request(spec, project, name)


def _split(rid: ResourceId) -> tuple[str, str]:
    project, _, name = rid.name.partition("/")
    return project, name


def _clear(value: Any) -> Any:
    """`value` with sensitive values revealed: only ever for a request body."""
    if isinstance(value, Sensitive):
        return value.reveal()
    if isinstance(value, Mapping):
        return {key: _clear(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clear(item) for item in value]
    return value
