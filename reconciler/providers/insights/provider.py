"""The kdb Insights provider: observes the Package Manager with two calls and acts on it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from reconciler.diff import Change
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.manifests import Manifests, Resource, ResourceId
from reconciler.manifests.values import Sensitive
from reconciler.providers.base import (
    Applied,
    Check,
    Desired,
    Health,
    Observation,
    Observed,
)
from reconciler.providers.http import HttpError
from reconciler.providers.insights.artifact import Artifact, build, read_prebuilt
from reconciler.providers.insights.build_index import BuildIndex
from reconciler.providers.insights.client import (
    USED,
    PackageManagerClient,
    differences,
)
from reconciler.providers.insights.kinds import DeploymentSpec, PackageSpec
from reconciler.providers.insights.policies import (
    InsightsPolicies,
    alone,
    component_change,
    redeploys,
)

RUNNING, ERROR, INACTIVE = "running", "error", "inactive"
"""Statuses as compared: KX shows Running, Error, Inactive and Initializing but does not
publish the API's strings, so they are compared case-insensitively and anything else
(Initializing, or a word nobody documented) counts as not ready."""


def status_of(item: Mapping[str, Any]) -> str:
    return str(item.get("status") or "").strip().lower()


def deployment_health(item: Mapping[str, Any]) -> Health:
    """Running is healthy, Initializing progresses, Error is degraded with the platform's
    message (NOTES.md, statuses); any other word is not known."""
    status = status_of(item)
    message = str(item.get("message") or "")
    if status == RUNNING:
        return Health("healthy")
    if status == ERROR:
        return Health("degraded", message or "Error")
    if status == "initializing":
        return Health("progressing", message or "Initializing")
    return Health("unknown", f"status {item.get('status') or 'none'}")


@dataclass(frozen=True, slots=True)
class Waiting:
    """How long a created, redeployed or bounced deployment may take to be Running."""

    timeout: float = 600.0
    first_poll: float = 0.05
    max_poll: float = 2.0


class InsightsProvider(InsightsPolicies):
    """Implements `reconciler.providers.base.Provider` for one kdb Insights instance."""

    def __init__(
        self,
        target: str,
        client: PackageManagerClient,
        manifests: Manifests,
        cache: Path,
        waiting: Waiting = Waiting(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self.client = client
        self._cache = cache
        self._waiting = waiting
        self._clock = clock
        self._content = manifests.content
        self._labels = {r.id: r.origin.file for r in manifests.resources}
        self._versions = {
            r.name: r.spec.version
            for r in manifests.resources
            if isinstance(r.spec, PackageSpec) and r.target == target
        }
        self._packages = {
            r.name: r
            for r in manifests.resources
            if isinstance(r.spec, PackageSpec) and r.target == target
        }

        """What the manifests want of each package: the version observation reports."""
        self._artifacts: dict[ResourceId, Artifact] = {}
        self._index: BuildIndex | None = None
        self._poll: tuple[float, list[dict[str, Any]]] | None = None
        self._poll_lock = asyncio.Lock()
        self._sent: set[ResourceId] = set()
        """Deployments this session sent a create for: sending one again (a retry of its
        action) looks first whether the first made it (`create`)."""
        self._replacing: dict[ResourceId, str] = {}
        """Deployments this session began to redeploy, with the id it tears down: a retry
        of the action goes on from where the try before got to (`_resumed`)."""

    @property
    def target(self) -> str:
        return self._target

    # --- desired -----------------------------------------------------------------------

    def desire(self, resource: Resource) -> Desired:
        if isinstance(resource.spec, PackageSpec):
            artifact = self._artifact(resource)
            package: dict[str, Any] = {
                "version": resource.spec.version,
                "content": artifact.content,
                "components": sorted(artifact.components),
            }
            return Desired(resource, package, artifact.fingerprints, artifact.loaded_by_key())
        deployment = cast(DeploymentSpec, resource.spec)
        spec: dict[str, Any] = {
            "package": deployment.package,
            "version": deployment.version or self._versions.get(deployment.package, ""),
            "updateStrategy": deployment.update_strategy,
            "cleanupOnDelete": deployment.cleanup_on_delete,
        }
        if deployment.components is not None:
            pairs = {(c.type, c.name) for c in deployment.components}
            spec["components"] = [{"type": t, "name": n} for t, n in sorted(pairs)]
        env = {name: dict(values) for name, values in deployment.env.items() if values}
        if env:
            spec["env"] = env
        # The files of the package version it runs, remembered once deployed: a new
        # version that changes only code can be hot-loaded (InsightsPolicies.classify).
        source = self._packages.get(deployment.package)
        if source is None:
            return Desired(resource, spec)
        artifact = self._artifact(source)
        return Desired(resource, spec, artifact.fingerprints, artifact.loaded_by_key())

    def _artifact(self, resource: Resource) -> Artifact:
        if resource.id not in self._artifacts:
            content = self._content[resource.id]
            path = content.source
            label = self._labels.get(resource.id, str(path))
            if path.is_dir():
                if self._index is None:
                    self._index = BuildIndex(self._cache, self._target)
                artifact = build(
                    path,
                    self._cache,
                    f"{label}: package folder {path.name}",
                    self._index,
                    list(content.files),
                )
            else:
                artifact = read_prebuilt(path, f"{label}: artifact {path.name}")
            self._artifacts[resource.id] = artifact
        return self._artifacts[resource.id]

    # --- observed ----------------------------------------------------------------------

    async def observe(self) -> Observation:
        packages, deployments = await asyncio.gather(
            self.client.list_packages(), self.client.list_deployments()
        )
        versions: dict[str, dict[str, dict[str, Any]]] = {}
        for item in packages:
            versions.setdefault(str(item.get("name")), {})[str(item.get("version"))] = item
        found: dict[ResourceId, Observed] = {}
        for name, held in versions.items():
            chosen = self._versions.get(name)
            if chosen not in held:
                chosen = max(held, key=version_key)
            item = held[chosen]
            # Names and versions only, as KX documents them: what the content is, is
            # remembered in the state store (Package rules: `remembered`).
            spec: dict[str, Any] = {"version": chosen}
            others = sorted((v for v in held if v != chosen), key=version_key)
            if others:
                spec["otherVersions"] = others
            rid = ResourceId(self._target, "Package", name)
            found[rid] = Observed(rid, spec)
        remains: dict[ResourceId, Observed] = {}
        for item in deployments:
            observed = self._deployment(item)
            if status_of(item) == INACTIVE:
                # Torn down: listed, not deployed; its persisted data stays until a
                # cleanup (NOTES.md: teardown keeps data unless asked).
                remains[observed.id] = observed
            else:
                found[observed.id] = observed
        remains = {rid: r for rid, r in remains.items() if rid not in found}
        return Observation(self._target, found, remains=remains)

    def _deployment(self, item: Mapping[str, Any]) -> Observed:
        package = str(item.get("package"))
        # A deployment is its package's (Deployment kind: identity="package").
        rid = ResourceId(self._target, "Deployment", package)
        # What KX documents of a deployment: its package, version and status. Its
        # components and env are compared with what was deployed (Deployment rules).
        spec: dict[str, Any] = {"package": package, "version": str(item.get("version"))}
        uses = (ResourceId(self._target, "Package", package),)
        status = str(item.get("status") or "") or None
        return Observed(rid, spec, uses, status=status, health=deployment_health(item))

    # --- actions -----------------------------------------------------------------------

    async def create(self, desired: Desired) -> None:
        if desired.id.kind == "Package":
            await self._push(desired, force=False)
            package = self._artifact(desired.resource).package_object()
            await self.client.validate_package(package)
            await self.client.create_package(package)
            return
        # Tried again after a failure that may have come after the deployment was made
        # (its answer lost, or the wait for it): "at most one version of a package is
        # deployed at a time" (NOTES.md; the sandbox's createDeployment answers 409). One
        # of this package and version, not torn down, that the observation did not show,
        # is that first try's: waited for.
        rid = desired.id
        if rid in self._sent:
            made = await self._active(str(desired.spec["package"]), str(desired.spec["version"]))
            if made is not None:
                await self._running(rid, made)
                return
        self._sent.add(rid)
        await self._deploy(desired)

    async def patch(self, desired: Desired, observed: Observed, changes: Sequence[Change]) -> None:
        if desired.id.kind == "Package":
            await self._push(desired, force=True)
            await self.client.validate_package(self._artifact(desired.resource).package_object())
            return
        if await self._resumed(desired):
            return
        package = str(desired.spec["package"])
        deployment_id = await self._id(desired.id, package)
        parts = component_change(changes)
        if parts is not None:
            added, removed = parts
            for component in removed:
                await self._tear_down(desired, deployment_id, component)
            if added:
                await self._deploy_components(desired, added)
        elif redeploys(desired, changes):
            await self._redeploy(desired, deployment_id)
        else:
            model = cast(DeploymentSpec, desired.model)
            version = str(desired.spec["version"])
            if model.hotload_targets:
                await self.client.hot_load(deployment_id, package, version, model.hotload_targets)
            if model.hotload_global_processes:
                await self.client.hot_load_global(
                    deployment_id, package, version, model.hotload_global_processes
                )
            await self._running(desired.id, deployment_id)

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None:
        """Make the running components load the package as pushed now. Whether a bounce
        does is not documented (NOTES.md, "Package layout"); a redeploy of each changed
        component is: pipelines and databases are torn down one by one (their data
        kept) and deployed again; any other component takes the whole deployment."""
        if desired.id.kind != "Deployment":
            raise PermanentError(f"{desired.id}: a Package has nothing to restart")
        if await self._resumed(desired):
            return
        deployment_id = await self._id(desired.id, str(desired.spec["package"]))
        if components and all(alone(c) for c in components):
            for component in components:
                await self._tear_down(desired, deployment_id, component)
            await self._deploy_components(desired, list(components))
        else:
            await self._redeploy(desired, deployment_id)

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        if rid.kind == "Deployment":
            # Data goes only when the manifest, as last applied, asked for it.
            cleanup = bool(applied is not None and applied.spec.get("cleanupOnDelete"))
            package = str(observed.spec.get("package"))
            if status_of({"status": observed.status}) == INACTIVE:
                # Torn down outside reconciler (observed as remains): only its data is
                # left, and the planner deletes it only when cleanupOnDelete asks.
                if cleanup:
                    await self.client.cleanup(await self._torn_down(rid, package))
                return
            await self.client.delete_deployment(await self._id(rid, package), cleanup=cleanup)
            # Asynchronous: what depends on it (its package's deletion) waits until done.
            await self._gone(rid, package)
            return
        version = str(observed.spec.get("version"))
        wanted = self._versions.get(rid.name)
        if wanted is not None and wanted != version:
            await self._retire(rid, version, applied)
            return
        await self.client.delete_package(rid.name, version)

    async def diagnose(self) -> list[Check]:
        try:
            where, live = await self.client.openapi()
        except OperationalError as exc:
            return [Check("reachable", False, str(exc))]
        checks = [Check("reachable", True, f"GET {where.split(', ')[0]} answered")]
        try:
            await self.client.list_packages()
            checks.append(Check("authenticated", True, "the Package Manager answered listPackages"))
        except OperationalError as exc:
            checks.append(Check("authenticated", False, str(exc)))
        if live is None:
            detail = f"no OpenAPI description at {where}: the assumed contract cannot be checked"
            checks.append(Check("API contract", False, detail))
            return checks
        found = differences(live)
        if found:
            detail = f"{len(found)} difference(s) from {where}: " + "; ".join(map(str, found))
        else:
            detail = (
                f"all {len(USED)} operations the provider uses match {where}: methods,"
                " paths, parameters, request bodies and responses"
            )
        checks.append(Check("API contract", not found, detail))
        return checks

    async def aclose(self) -> None:
        if self._index is not None:
            self._index.save()
        await self.client.aclose()

    # --- helpers -----------------------------------------------------------------------

    async def _push(self, desired: Desired, *, force: bool) -> None:
        data = self._artifact(desired.resource).read()
        try:
            await self.client.push_artifact(data, force=force)
        except HttpError as exc:
            if exc.status != 409 or force:
                raise
            # Pushed by a run that stopped before registering it: ours to overwrite.
            await self.client.push_artifact(data, force=True)

    async def _retire(self, rid: ResourceId, version: str, applied: Applied | None) -> None:
        """After a version change: the old version goes if reconciler pushed it and no
        deployment runs it any more; otherwise it stays (the plan warned about it)."""
        if applied is None or applied.spec.get("version") != version:
            return
        for item in await self.client.list_deployments():
            if (
                item.get("package") == rid.name
                and str(item.get("version")) == version
                and status_of(item) != INACTIVE
            ):
                return
        await self.client.delete_package(rid.name, version)

    async def _deploy(self, desired: Desired) -> None:
        spec = desired.spec
        components = None
        if spec.get("components") is not None:
            components = [f"{c['type']}:{c['name']}" for c in spec["components"]]
        env = {
            name: {key: str(_clear(value)) for key, value in values.items()}
            for name, values in (spec.get("env") or {}).items()
        }
        answer = await self.client.create_deployment(
            str(spec["package"]), str(spec["version"]), components, env
        )
        await self._running(desired.id, str(answer["id"]))

    async def _deploy_components(self, desired: Desired, components: list[str]) -> None:
        """Deploy these components into the package's deployment, then wait for it."""
        answer = await self.client.create_deployment(
            str(desired.spec["package"]), str(desired.spec["version"]), components, {}
        )
        await self._running(desired.id, str(answer["id"]))

    async def _redeploy(self, desired: Desired, deployment_id: str) -> None:
        """Tear down the whole deployment (never its data), wait, deploy again."""
        self._replacing[desired.id] = deployment_id
        await self.client.delete_deployment(deployment_id, cleanup=False)
        await self._gone(desired.id, str(desired.spec["package"]))
        await self._deploy(desired)
        del self._replacing[desired.id]

    async def _resumed(self, desired: Desired) -> bool:
        """A redeploy tried again after a failure past its teardown (an answer lost, a
        wait that failed) is finished from where it got to, not begun again (a second
        teardown and deploy, a second restart of everything): a deployment of the
        package with another id than the one torn down is the new one, waited for; none
        at all, the teardown is done and the deploy is made. True when finished here."""
        old = self._replacing.get(desired.id)
        if old is None:
            return False
        current = await self._active(str(desired.spec["package"]))
        if current == old:
            return False  # not torn down yet: as the first time
        if current is None:
            await self._deploy(desired)
        else:
            await self._running(desired.id, current)
        del self._replacing[desired.id]
        return True

    async def _active(self, package: str, version: str | None = None) -> str | None:
        """The id of the package's deployment that is not torn down (at `version`, if
        given), if any."""
        for item in await self.client.list_deployments():
            if (
                item.get("package") == package
                and status_of(item) != INACTIVE
                and (version is None or str(item.get("version")) == version)
            ):
                return str(item["id"])
        return None

    async def _id(self, rid: ResourceId, package: str) -> str:
        found = await self._active(package)
        if found is None:
            raise PermanentError(f"{rid}: no deployment of that name on the target any more")
        return found

    async def _tear_down(self, desired: Desired, deployment_id: str, component: str) -> None:
        """Tear one component of the deployment down. One it no longer runs is down
        already (a try before, whose answer was lost, did it): the Package Manager answers
        404 (sandbox/insights.py `_teardown_component` models it so; KX does not say),
        and the action goes on to deploy it again, rather than fail and leave it down
        with nothing left to plan. Unless the deployment itself has gone."""
        try:
            await self.client.delete_component(deployment_id, component)
        except HttpError as exc:
            if exc.status != 404:
                raise
            rid = desired.id
            if await self._id(rid, str(desired.spec["package"])) != deployment_id:
                raise PermanentError(f"{rid}: the deployment was replaced meanwhile") from None

    async def _torn_down(self, rid: ResourceId, package: str) -> str:
        """The id of the package's torn-down deployment (the last one listed)."""
        for item in reversed(await self.client.list_deployments()):
            if item.get("package") == package and status_of(item) == INACTIVE:
                return str(item["id"])
        raise PermanentError(f"{rid}: no torn-down deployment of that package any more")

    async def _running(self, rid: ResourceId, deployment_id: str) -> None:
        """Wait until the deployment is Running; its dependents start only then."""
        pause = self._waiting.first_poll
        started = self._clock()
        deadline = started + self._waiting.timeout
        while True:
            listed = await self._listed(after=started)
            item = next((d for d in listed if str(d.get("id")) == deployment_id), None)
            status = status_of(item) if item is not None else ""
            if status == RUNNING:
                return
            # The deployment was made: a create that fails here did happen (refused=False).
            if item is not None and status == ERROR:
                message = str(item.get("message") or "no message")
                raise PermanentError(f"{rid} is in state Error: {message}", refused=False)
            if status == INACTIVE:
                raise PermanentError(f"{rid} was torn down while it was starting", refused=False)
            if self._clock() >= deadline:
                raise PermanentError(
                    f"{rid} was not Running within {self._waiting.timeout:g}s (state"
                    f" {(item or {}).get('status') or 'not listed'}); raise deployTimeout in"
                    " reconciler.yaml if it needs longer",
                    refused=False,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._waiting.max_poll)

    async def _gone(self, rid: ResourceId, package: str) -> None:
        """Wait until a package's torn-down deployment shows Inactive, or has left the
        list."""
        pause = self._waiting.first_poll
        started = self._clock()
        deadline = started + self._waiting.timeout
        while True:
            listed = await self._listed(after=started)
            left = [d for d in listed if d.get("package") == package]
            if all(status_of(d) == INACTIVE for d in left):
                return
            if any(status_of(d) == ERROR for d in left):
                message = next(str(d.get("message") or "no message") for d in left)
                raise PermanentError(f"{rid} failed to tear down: {message}")
            if self._clock() >= deadline:
                raise RetryableError(
                    f"{rid} is still being torn down after {self._waiting.timeout:g}s"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._waiting.max_poll)

    async def _listed(self, after: float) -> list[dict[str, Any]]:
        """The deployments as one list call shows them, shared by every wait in flight
        (waiting on many deployments costs one call per pause, not one per deployment);
        never a list asked for before `after`, when the wait began."""
        async with self._poll_lock:
            now = self._clock()
            if (
                self._poll is None
                or self._poll[0] < after
                or now - self._poll[0] >= self._waiting.first_poll
            ):
                self._poll = (now, await self.client.list_deployments())
            return self._poll[1]


def _entities(items: Sequence[Any]) -> list[dict[str, str]]:
    pairs = {(str(item["type"]), str(item["name"])) for item in items}
    return [{"type": t, "name": n} for t, n in sorted(pairs)]


_PART = re.compile(r"(\d+)|([A-Za-z]+)")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders versions as humans do: 1.10.0 after 1.9.0, 2.0rc1 before 2.0."""
    parts: list[tuple[int, int | str]] = []
    for number, word in _PART.findall(version):
        parts.append((1, int(number)) if number else (0, word.lower()))
    parts.append((0, "~"))  # a release sorts after its pre-releases: "~" follows letters
    return tuple(parts)


def _clear(value: Any) -> Any:
    """A sensitive value revealed: only ever for a request body."""
    return value.reveal() if isinstance(value, Sensitive) else value
