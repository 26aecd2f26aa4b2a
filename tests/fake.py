"""The real providers' policies and normalisation over an in-memory platform: fake I/O.

As httpx's `MockTransport` keeps the client real and fakes the wire, `FakeProvider`
keeps everything of a platform's provider that decides (its rules, `classify`,
`bounces`, `check`, and `desire`, which builds artifacts and fills in server defaults)
and fakes only what it calls: observe, create, patch, bounce and delete act on a
`FakePlatform` in memory, which can be made to fail (retryable and permanent errors,
latency), to hold resources no manifest names, or to list some kinds incompletely. So
the golden plans exercise the real classification of both platforms.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler.diff import Change, sealed
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.manifests import Manifests, Resource, ResourceId
from reconciler.manifests.config import TargetConfig
from reconciler.providers.base import (
    Applied,
    Bounce,
    Check,
    Decision,
    Desired,
    Finding,
    KindRules,
    Observation,
    Observed,
    Provider,
)
from reconciler.providers.plugin import Connection, installed_plugins


def _no_calls(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the fake provider's real half called {request.url}")


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
    """Implements `reconciler.providers.base.Provider`: the real provider's pure half and
    `desire`, over a `FakePlatform`."""

    def __init__(
        self, target: str, config: TargetConfig, platform: FakePlatform, manifests: Manifests
    ) -> None:
        self._target = target
        self.platform = platform
        self.manifests = manifests
        plugin = installed_plugins()[config.provider]
        self.real: Provider = plugin.connect(
            Connection(
                target,
                config,
                manifests,
                cache=None,
                environ={},
                transport=httpx.MockTransport(_no_calls),
                base_url="http://fake.invalid",
            )
        )

    # --- the real provider's -------------------------------------------------------------

    @property
    def provider(self) -> str:
        return self.real.provider

    @property
    def kinds(self) -> frozenset[str]:
        return self.real.kinds

    @property
    def target(self) -> str:
        return self._target

    def rules(self, kind: str) -> KindRules:
        return self.real.rules(kind)

    def classify(
        self,
        desired: Desired,
        observed: Observed,
        changes: Sequence[Change],
        applied: Applied | None,
    ) -> Decision:
        return self.real.classify(desired, observed, changes, applied)

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        return self.real.bounces(dependency, decision, dependent)

    def check(self, desired: Sequence[Desired], observation: Observation) -> Sequence[Finding]:
        return self.real.check(desired, observation)

    def desire(self, resource: Resource) -> Desired:
        return self.real.desire(resource)

    # --- the fake I/O ------------------------------------------------------------------

    async def observe(self) -> Observation:
        self.platform.reads += 1
        if self.platform.observe_error is not None:
            raise self.platform.observe_error
        found = {}
        for rid, spec in self.platform.resources.items():
            if rid.target != self._target:
                continue
            sealed_fields = {p.removeprefix("spec.") for p in self.rules(rid.kind).sealed}
            shown = {k: v for k, v in spec.items() if k not in sealed_fields}
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
        if self.classify(desired, observed, changes, None).restarts:
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
        await self.real.aclose()

    def _store(self, desired: Desired) -> None:
        spec = sealed(dict(desired.spec))
        if desired.id.kind == "Secret":
            self.platform.secrets[desired.id] = {
                key: value.reveal() if hasattr(value, "reveal") else str(value)
                for key, value in desired.spec.get("data", {}).items()
            }
        self.platform.resources[desired.id] = spec


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
        provider = FakeProvider(target, config, platform, manifests)
        self.providers[target] = provider
        return provider
