"""Layer 2, the protocol: what a provider declares and what it does.

Rule: types, signatures and pure helpers only; no I/O. Imports `reconciler.errors`,
`reconciler.manifests` and `reconciler.diff`. The planner (layer 2) imports this module
and no other of `reconciler.providers`; each platform subpackage implements it and never
imports another platform's.

A provider serves the kinds of one platform on one target, in two halves:

* `Policies`, the pure half: per kind, how to diff (`KindRules`: unordered lists,
  ignored and write-only paths, a policy per field), how to turn the changes into an
  action (`classify`), which content changes of a dependency bounce a dependent and
  which of its components (`bounces`), and what else is wrong (`check`). The planner
  uses only this half, so a plan is a pure function of data.
* `Provider`, the I/O half: `observe` lists every kind with as few calls as the API
  allows and says which kinds it could not list completely; `desire` normalises a
  manifest into the spec the platform would hold (server defaults filled in); and the
  mutating calls `create`, `patch`, `bounce` and `delete`, which raise only
  `RetryableError` or `PermanentError` (see `reconciler.errors`).

This is pulumi's dynamic provider interface (check / diff / create / read / update /
delete, with replaces and delete-before-replace), with the diff made declarative.

A platform plugs in as a `reconciler.providers.plugin.ProviderPlugin`: its kinds, its
target model, these policies, and `connect`, which makes its `Provider` of one target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, Literal, Protocol

from reconciler.diff import Change, DiffRules, PathKey, digest, path_of
from reconciler.manifests import Resource, ResourceId
from reconciler.manifests.resources import Spec_co

ActionName = Literal["create", "patch", "bounce", "replace", "delete", "noop"]
ACTIONS: tuple[ActionName, ...] = ("create", "patch", "bounce", "replace", "delete", "noop")
DeletionPolicy = Literal["Delete", "Orphan"]


class Policy(IntEnum):
    """What a change to a field takes; a stronger policy wins over a weaker one."""

    PATCH = 0
    """Changed in place; nothing restarts."""
    PATCH_BOUNCE = 1
    """Changed in place, then bounced (restarted) to take effect."""
    REPLACE = 2
    """Deleted and created again."""
    IMMUTABLE = 3
    """Cannot change at all: the plan fails and says what to do instead."""


@dataclass(frozen=True, slots=True, init=False)
class FieldPolicy:
    """The policy of a field and of everything below it, e.g. `spec.transform`."""

    path: PathKey
    policy: Policy
    reason: str
    """Added to the action's reasons when this field changes."""

    def __init__(self, path: str | PathKey, policy: Policy, reason: str = "") -> None:
        # Written as text in the providers' tables (`"spec.transform"`), kept as a path.
        object.__setattr__(self, "path", path_of(path) if isinstance(path, str) else path)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "reason", reason)

    def covers(self, path: PathKey) -> bool:
        return path[: len(self.path)] == self.path


@dataclass(frozen=True, slots=True)
class KindRules:
    """What a provider tells the planner about one kind."""

    diff: DiffRules = field(default_factory=DiffRules)
    """Relative to the spec: lists compared as sets, paths never compared."""
    fields: tuple[FieldPolicy, ...] = ()
    default: FieldPolicy = FieldPolicy("spec", Policy.PATCH)
    """For a change no entry of `fields` covers."""
    remembered: tuple[str, ...] = ()
    """Top-level spec fields the platform does not show back, or shows in a way nobody
    documents (a package's content digest, which we compute; the env a deployment was
    given): compared with the spec as last applied, which the inventory keeps (sensitive
    values by digest), key by key; never with the platform's answer."""
    sealed: tuple[str, ...] = ()
    """Write-only top-level spec fields (`spec.data` of a secret): the platform never shows
    them back, so they are compared by digest with what was last applied."""
    delete_before_replace: bool = True
    """False where the platform holds the old and the new resource at once."""
    cleanup: str | None = None
    """A boolean top-level spec field (`spec.cleanupOnDelete`) by which a manifest asks
    that what its resource leaves behind be deleted with it. A resource that leaves the
    manifests after it was stopped outside reconciler (`Observation.remains`) is then
    deleted, as last applied asked; otherwise it is forgotten and its remains kept."""

    def policy_of(self, change: Change) -> FieldPolicy:
        """The strongest policy among the field the change is at (the longest covering
        entry) and any field below it (a whole new `spec.transform` holds its image)."""
        covering = [p for p in self.fields if p.covers(change.path)]
        found = max(covering, key=lambda p: len(p.path)) if covering else self.default
        below = [
            p
            for p in self.fields
            if len(p.path) > len(change.path) and p.path[: len(change.path)] == change.path
        ]
        return max([found, *below], key=lambda p: p.policy)


@dataclass(frozen=True, slots=True)
class Desired(Generic[Spec_co]):
    """A manifest as the platform would hold it: its typed model (`model`), which the
    provider's requests are built from, and its canonical form (`spec`), which is
    compared with what the platform shows."""

    resource: Resource[Spec_co]
    spec: Mapping[str, Any]
    """Canonical and normalised (server defaults filled in), for the diff; sensitive
    values stay `Sensitive` until a request is built."""
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    """Digests of content the platform cannot show back, beyond sealed fields (the files
    of a package folder, by path); kept in the inventory once applied."""
    loaded_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Content key (of `fingerprints`) to the parts of a dependent that load it (a package
    file to the `pipeline:<name>` it defines); content no part claims concerns every part."""

    @property
    def id(self) -> ResourceId:
        return self.resource.id

    @property
    def model(self) -> Spec_co:
        """The manifest's spec as its kind's model."""
        return self.resource.spec


HealthState = Literal["healthy", "progressing", "degraded", "unknown"]
HEALTH_STATES: tuple[HealthState, ...] = ("healthy", "progressing", "degraded", "unknown")


@dataclass(frozen=True, slots=True)
class Health:
    """How a resource is doing on its platform, as the platform says (Argo CD's health)."""

    state: HealthState
    reason: str = ""
    """The platform's own words (pachd's pipeline reason, a deployment's message)."""


HEALTHY = Health("healthy")


@dataclass(frozen=True, slots=True)
class Observed:
    """A resource as a provider found it on its target, normalised."""

    id: ResourceId
    spec: Mapping[str, Any]
    depends_on: tuple[ResourceId, ...] = ()
    """What it uses on the platform (a pipeline's inputs): orders deletes of resources no
    longer in the manifests."""
    status: str | None = None
    affects: tuple[ResourceId, ...] | None = None
    """What the planned change of it would restart on the platform, when the platform can
    tell before the change (pachd's dryRun of new defaults); None: not asked."""
    health: Health = HEALTHY
    """What the platform says of it; a kind with no state of its own (a repo, a secret)
    is healthy when it is there."""


@dataclass(frozen=True, slots=True)
class Observation:
    target: str
    resources: Mapping[ResourceId, Observed]
    incomplete: Mapping[str, str] = field(default_factory=dict)
    """Kind to the reason it could not be listed in full. Such kinds get no deletes."""
    remains: Mapping[ResourceId, Observed] = field(default_factory=dict)
    """Resources stopped on the target (not in `resources`) that left something behind
    which deleting them would remove: an Insights deployment torn down outside
    reconciler keeps its persisted data. Deleted only per their kind's
    `KindRules.cleanup`."""

    def complete(self, kind: str) -> bool:
        return kind not in self.incomplete


@dataclass(frozen=True, slots=True)
class Applied:
    """What this reconciler last applied to a resource it owns (from the inventory)."""

    id: ResourceId
    digest: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    """The normalised spec, with sensitive values as digests."""
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    protect: bool = False
    deletion_policy: DeletionPolicy = "Delete"
    adopted: bool = False
    revision: str | None = None


@dataclass(frozen=True, slots=True)
class Bounce:
    """Restart a running resource so that it loads changed content."""

    components: tuple[str, ...] | None
    """Only these components; None: all of them."""
    reason: str

    @property
    def shown(self) -> str:
        """The components it restarts, as a person reads them."""
        return "all components" if self.components is None else ", ".join(self.components)

    def merge(self, other: Bounce) -> Bounce:
        if self.components is None or other.components is None:
            components = None
        else:
            components = tuple(sorted({*self.components, *other.components}))
        reason = self.reason if other.reason == self.reason else f"{self.reason}; {other.reason}"
        return Bounce(components, reason)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a resource that exists on its target and is in the manifests."""

    action: Literal["patch", "replace", "noop"]
    reasons: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    bounce: Bounce | None = None
    """After the patch, bounce these components (policy PATCH_BOUNCE)."""
    restarts: bool = False
    """The action restarts the resource by itself (a Pachyderm pipeline update)."""
    content: frozenset[str] = frozenset()
    """What content changed that dependents may have loaded (files of a package, keys of
    a secret): `Policies.bounces` is asked about each dependent."""
    delete_before_replace: bool = True
    blocked: str | None = None
    """Why the change cannot be made, and what to do instead (policy IMMUTABLE)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a provider found wrong with the desired state against the live one."""

    id: ResourceId | None
    message: str
    hint: str = ""
    error: bool = True
    """An error fails the plan; otherwise it is a warning."""


@dataclass(frozen=True, slots=True)
class Check:
    """One finding of `reconciler doctor` about a target."""

    name: str
    ok: bool
    detail: str


class Policies(Protocol):
    """The pure half of a provider."""

    @property
    def provider(self) -> str: ...

    @property
    def kinds(self) -> frozenset[str]: ...

    def rules(self, kind: str) -> KindRules: ...

    def classify(
        self,
        desired: Desired,
        observed: Observed,
        changes: Sequence[Change],
        applied: Applied | None,
    ) -> Decision: ...

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        """Whether a content change of `dependency` restarts `dependent`, and which parts."""
        ...

    def check(self, desired: Sequence[Desired], observation: Observation) -> Sequence[Finding]: ...


class Provider(Policies, Protocol):
    """The whole provider: the pure half, plus observation and the mutating calls."""

    @property
    def target(self) -> str: ...

    def desire(self, resource: Resource) -> Desired: ...

    async def observe(self) -> Observation:
        """What the provider's kinds hold on the target. A provider that lists per
        scope (a Pachyderm project) may observe only the scopes its manifests name, and
        define `expect(owned)`, called before with the ids the inventory holds on its
        target (and those a killed run may have created), to observe the scopes those
        name too (optional: the core asks for it by name). Whatever could use an owned
        resource must be observed all the same: it guards deletes. A provider lives for
        one session: its first observe reads everything; a second (the refresh after an
        apply, under the same locks) may read again only what its own calls since may
        have changed, and answer the rest as the first read it."""
        ...

    async def create(self, desired: Desired) -> None: ...

    async def patch(
        self, desired: Desired, observed: Observed, changes: Sequence[Change]
    ) -> None: ...

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None: ...

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        """Delete; data goes only where `applied` (the manifest as last applied) asks."""
        ...

    async def diagnose(self) -> list[Check]:
        """Reachability, authentication and whatever else can be checked without changing
        anything; never raises for a platform's failure (a failed Check says it)."""
        ...

    async def aclose(self) -> None: ...


# --- helpers every provider may use -------------------------------------------------------


def classify_by_fields(rules: KindRules, changes: Sequence[Change]) -> Decision:
    """The decision field policies alone give: the strongest policy among the changes."""
    if not changes:
        return Decision("noop")
    policies = [(change, rules.policy_of(change)) for change in changes]
    strongest = max(policy.policy for _, policy in policies)
    reasons = _reasons(changes, [p for _, p in policies if p.policy == strongest])
    if strongest is Policy.IMMUTABLE:
        fields = ", ".join(sorted({c.text for c, p in policies if p.policy is Policy.IMMUTABLE}))
        why = next((p.reason for _, p in policies if p.reason), "")
        return Decision(
            "noop",
            reasons,
            tuple(changes),
            blocked=f"{fields} cannot be changed on the platform" + (f": {why}" if why else ""),
        )
    if strongest is Policy.REPLACE:
        return Decision(
            "replace",
            reasons,
            tuple(changes),
            delete_before_replace=rules.delete_before_replace,
        )
    bounce = None
    if strongest is Policy.PATCH_BOUNCE:
        bounce = Bounce(None, "changed fields take effect on restart")
    return Decision("patch", reasons, tuple(changes), bounce=bounce)


def _reasons(changes: Sequence[Change], policies: Iterable[FieldPolicy]) -> tuple[str, ...]:
    paths = sorted({c.text for c in changes})
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    reasons = [f"changed: {shown}"]
    for reason in dict.fromkeys(p.reason for p in policies if p.reason):
        reasons.append(reason)
    return tuple(reasons)


def sealed_digests(spec: Mapping[str, Any], rules: KindRules) -> dict[str, str]:
    """The digest of each write-only field the desired spec sets."""
    result = {}
    for path in rules.sealed:
        key = path.removeprefix("spec.")
        if key in spec:
            result[path] = digest(spec[key])
    return result
