"""A fake provider over an in-memory platform, for testing the engine without HTTP.

It serves the real manifest kinds with simplified but representative policies, so that
every path of the engine is exercised: server defaults (a Pipeline's `datumTries`),
write-only fields (a Secret's `data`), content changes that bounce dependents and only
the components whose files changed (a Package's folder), patch-then-bounce, replace,
immutable fields, dependency-ordered deletes, incomplete observations, and injected
faults (retryable and permanent errors, latency).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.diff import Change, digest, sealed
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.manifests import Manifests, Resource, ResourceId
from reconciler.manifests.config import TargetConfig
from reconciler.providers.base import (
    Applied,
    Bounce,
    Check,
    Decision,
    Desired,
    FieldPolicy,
    Finding,
    KindRules,
    Observation,
    Observed,
    Policy,
    classify_by_fields,
)
from reconciler.providers.pachyderm.policies import RULES as PACHYDERM_RULES

RULES: dict[str, KindRules] = {
    # The real Pachyderm rules: the fake differs from pachd in I/O, not in what a change takes.
    **PACHYDERM_RULES,
    "Package": KindRules(
        fields=(
            FieldPolicy("spec.version", Policy.REPLACE, "a new package version"),
            FieldPolicy("spec.digest", Policy.PATCH, "re-pushed under the same version"),
        ),
        delete_before_replace=False,
    ),
    "Deployment": KindRules(
        fields=(
            FieldPolicy("spec.version", Policy.PATCH_BOUNCE, "hot-loads the new version"),
            FieldPolicy(
                "spec.env", Policy.REPLACE, "redeployed: torn down (data kept) and created"
            ),
            FieldPolicy("spec.components", Policy.REPLACE, "redeployed with other components"),
            FieldPolicy(
                "spec.package",
                Policy.IMMUTABLE,
                "a deployment keeps its package; deploy the other one under a new name",
            ),
        )
    ),
}


@dataclass
class FakePlatform:
    """What the fake target holds, what was asked of it, and what it will do wrong."""

    resources: dict[ResourceId, dict[str, Any]] = field(default_factory=dict)
    previous: dict[ResourceId, list[dict[str, Any]]] = field(default_factory=dict)
    """Older generations still held after a create-before-delete replace."""
    secrets: dict[ResourceId, dict[str, str]] = field(default_factory=dict)
    """Clear secret data as the platform received it; never shown back by observe."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    reads: int = 0
    restarts: Counter[str] = field(default_factory=Counter)
    bounced: dict[str, list[tuple[str, ...] | None]] = field(default_factory=dict)
    data_deleted: list[str] = field(default_factory=list)
    faults: dict[tuple[str, str], list[OperationalError]] = field(default_factory=dict)
    """(call, id) to the errors its next calls raise, in order."""
    fail_rate: float = 0.0
    latency: float = 0.0
    incomplete: dict[str, str] = field(default_factory=dict)
    observe_error: OperationalError | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    seed: int = 0
    _random: random.Random = field(default_factory=random.Random)

    @property
    def mutating(self) -> int:
        return len(self.calls)

    async def enter(self, call: str, rid: ResourceId) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            queued = self.faults.get((call, str(rid)))
            if queued:
                raise queued.pop(0)
            if self.fail_rate and self._random.random() < self.fail_rate:
                raise RetryableError(f"injected fault on {call} {rid}")
        finally:
            self.in_flight -= 1
        self.calls.append((call, str(rid)))


class FakeProvider:
    """Implements `reconciler.providers.base.Provider` over a `FakePlatform`."""

    def __init__(
        self, target: str, provider: str, platform: FakePlatform, manifests: Manifests
    ) -> None:
        self._target = target
        self._provider = provider
        self.platform = platform
        self.manifests = manifests
        self._kinds = frozenset(
            i.kind for i in manifests.catalog.kinds.values() if i.provider == provider
        )
        self._versions = {
            r.name: str(r.spec.spec_data()["version"])
            for r in manifests.resources
            if r.kind == "Package" and r.target == target
        }

    # --- the pure half -----------------------------------------------------------------

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    @property
    def target(self) -> str:
        return self._target

    def rules(self, kind: str) -> KindRules:
        return RULES[kind]

    def classify(
        self,
        desired: Desired,
        observed: Observed,
        changes: Sequence[Change],
        applied: Applied | None,
    ) -> Decision:
        decision = classify_by_fields(self.rules(desired.id.kind), changes)
        kind = desired.id.kind
        if kind == "Pipeline" and decision.action == "patch":
            restarting = any(
                not c.path.startswith(("spec.stopped", "spec.reprocessOnUpdate")) for c in changes
            )
            return Decision("patch", decision.reasons, decision.changes, restarts=restarting)
        if kind == "Secret" and decision.action == "replace":
            return Decision(
                "replace", decision.reasons, decision.changes, content=frozenset({"data"})
            )
        if kind == "Package" and decision.action == "patch":
            known = applied.fingerprints if applied else {}
            changed = {
                path
                for path in {*desired.fingerprints, *known}
                if desired.fingerprints.get(path) != known.get(path)
            }
            return Decision("patch", decision.reasons, decision.changes, content=frozenset(changed))
        return decision

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        if dependency.id.kind == "Package" and dependent.id.kind == "Deployment":
            components: set[str] = set()
            for path in decision.content:
                name = path.removeprefix("files/")
                if name.startswith("pipelines/") and name.endswith(".yaml"):
                    components.add("pipeline:" + name.removeprefix("pipelines/")[:-5])
                else:
                    return Bounce(None, f"package {dependency.id.name} changed")
            return Bounce(tuple(sorted(components)), f"package {dependency.id.name} changed")
        if dependency.id.kind == "Secret" and dependent.id.kind == "Pipeline":
            return Bounce(None, f"secret {dependency.id.name} changed; it is read at start")
        return None

    def check(self, desired: Sequence[Desired], observation: Observation) -> list[Finding]:
        defined = {d.id.name for d in desired if d.id.kind == "Secret"}
        present = {rid.name for rid in observation.resources if rid.kind == "Secret"}
        findings = []
        for want in desired:
            if want.id.kind != "Pipeline":
                continue
            for mount in want.spec.get("transform", {}).get("secrets", []):
                name = mount.get("name")
                if name not in defined and name not in present:
                    findings.append(
                        Finding(
                            want.id,
                            f"mounts secret '{name}', which is neither in the manifests nor on"
                            " the target",
                            "add a pachyderm/v1 Secret manifest for it",
                        )
                    )
        return findings

    # --- the I/O half ------------------------------------------------------------------

    def desire(self, resource: Resource) -> Desired:
        spec = resource.spec.spec_data()
        fingerprints: dict[str, str] = {}
        if resource.kind == "Pipeline":
            spec.setdefault("datumTries", 3)  # a server default
            spec.pop("reprocessOnUpdate", None)
        if resource.kind == "Secret":
            spec.setdefault("type", "Opaque")
        if resource.kind == "Deployment":
            spec.setdefault("version", self._versions.get(spec["package"]))
            spec.setdefault("updateStrategy", "redeploy")
        if resource.kind == "Package":
            folder = resource.origin.path.parent / str(spec.pop("source", "") or "")
            if "artifact" in spec:
                fingerprints = {"artifact": digest(spec.pop("artifact"))}
            else:
                fingerprints = dict(_files(folder))
            spec["digest"] = digest(fingerprints)
        return Desired(resource, spec, fingerprints)

    async def observe(self) -> Observation:
        self.platform.reads += 1
        if self.platform.observe_error is not None:
            raise self.platform.observe_error
        found = {}
        for rid, spec in self.platform.resources.items():
            if rid.target != self._target:
                continue
            shown = {k: v for k, v in spec.items() if not (rid.kind == "Secret" and k == "data")}
            found[rid] = Observed(rid, shown, tuple(_uses(rid, spec)))
        return Observation(self._target, found, dict(self.platform.incomplete))

    async def create(self, desired: Desired) -> None:
        await self.platform.enter("create", desired.id)
        current = self.platform.resources.get(desired.id)
        if current is not None:
            if self.rules(desired.id.kind).delete_before_replace:
                raise PermanentError(f"{desired.id} already exists")
            # This kind holds an old and a new generation at once (package versions).
            self.platform.previous.setdefault(desired.id, []).append(current)
        self._store(desired)

    async def patch(self, desired: Desired, observed: Observed, changes: Sequence[Change]) -> None:
        await self.platform.enter("patch", desired.id)
        if desired.id not in self.platform.resources:
            raise PermanentError(f"{desired.id} not found")
        self._store(desired)
        if desired.id.kind == "Pipeline" and any(
            not c.path.startswith(("spec.stopped", "spec.reprocessOnUpdate")) for c in changes
        ):
            self.platform.restarts[str(desired.id)] += 1

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None:
        await self.platform.enter("bounce", desired.id)
        self.platform.restarts[str(desired.id)] += 1
        self.platform.bounced.setdefault(str(desired.id), []).append(components)

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        await self.platform.enter("delete", rid)
        older = self.platform.previous.get(rid, [])
        if dict(observed.spec) in older and self.platform.resources.get(rid) != observed.spec:
            older.remove(dict(observed.spec))  # the old generation of a create-before-delete
            return
        if rid not in self.platform.resources:
            raise PermanentError(f"{rid} not found")
        users = [
            other
            for other, spec in self.platform.resources.items()
            if rid in _uses(other, spec) and other != rid
        ]
        if users:
            raise PermanentError(f"{rid} is in use by {', '.join(map(str, users))}")
        del self.platform.resources[rid]
        self.platform.secrets.pop(rid, None)
        if applied is not None and applied.spec.get("cleanupOnDelete"):
            self.platform.data_deleted.append(str(rid))

    async def diagnose(self) -> list[Check]:
        if self.platform.observe_error is not None:
            return [Check("reachable", False, str(self.platform.observe_error))]
        return [Check("reachable", True, "the fake platform answered")]

    async def aclose(self) -> None:
        pass

    def _store(self, desired: Desired) -> None:
        spec = sealed(dict(desired.spec))
        if desired.id.kind == "Secret":
            self.platform.secrets[desired.id] = {
                key: value.reveal() if hasattr(value, "reveal") else str(value)
                for key, value in desired.spec.get("data", {}).items()
            }
        self.platform.resources[desired.id] = spec


def _files(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            yield f"files/{rel}", "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _uses(rid: ResourceId, spec: Mapping[str, Any]) -> Iterator[ResourceId]:
    if rid.kind in ("Repo", "Pipeline") and "/" in rid.name:
        project = rid.name.split("/", 1)[0]
        if project != "default":
            yield ResourceId(rid.target, "Project", project)
        if rid.kind == "Pipeline":
            for repo in _pfs_repos(spec.get("input") or {}):
                for kind in ("Repo", "Pipeline"):
                    yield ResourceId(rid.target, kind, f"{project}/{repo}")
    if rid.kind == "Deployment":
        yield ResourceId(rid.target, "Package", str(spec.get("package")))


def _pfs_repos(node: Mapping[str, Any]) -> Iterator[str]:
    if "pfs" in node:
        yield str(node["pfs"].get("repo"))
    for key in ("join", "group", "cross", "union"):
        for child in node.get(key) or ():
            yield from _pfs_repos(child)


class FakeConnector:
    """Connects every target to a fake provider over its own `FakePlatform`."""

    def __init__(self, platforms: Mapping[str, FakePlatform] | None = None) -> None:
        self.platforms: dict[str, FakePlatform] = dict(platforms or {})
        self.providers: dict[str, FakeProvider] = {}

    def __call__(self, target: str, config: TargetConfig, manifests: Manifests) -> FakeProvider:
        platform = self.platforms.setdefault(target, FakePlatform())
        provider = FakeProvider(target, config.provider, platform, manifests)
        self.providers[target] = provider
        return provider
