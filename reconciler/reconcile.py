"""Layer 5: one reconcile, end to end: observe, normalise, plan, and apply.

Rule: imports layers 0-5 (`reconciler.execute` included) and libraries; never prints,
never reads flags, names no platform. Which providers serve which targets is decided by
the composition root (layer 7) and handed in as a `Connector`.

`reconcile` is the one use case `apply`, `watch` and `serve` run: a `Request` says plan
or apply, with which options, under which lock, and how to show progress; the callers
differ in options, not in code.

Planning observes every target concurrently, normalises the desired resources through
their providers, reads the inventory, and calls the pure planner. Applying a saved plan
first re-observes and refuses, naming each resource, when the manifests or the live
state of anything the plan touches moved since the plan was made.

Crash recovery happens here, against the observation: a create whose intent is still
open (its run was killed between the call and the inventory record) and whose resource
the target now shows is ours, recorded from the entry its intent carries. A plan only
counts such resources as owned; an apply, holding the targets' locks, writes them to
the inventory and closes the dead run's intents and run record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, cast

from reconciler import graph as graphs
from reconciler import resource_status
from reconciler.diff import digest
from reconciler.errors import InputError, OperationalError, Problem, ReconcilerError
from reconciler.execute import ExecuteOptions, Listener, Outcome, Work, execute
from reconciler.graph import Graph
from reconciler.manifests import Manifests, ResourceId
from reconciler.manifests.config import Settings, TargetConfig
from reconciler.plan import Action, Binding, Plan, PlanOptions, Source, make_plan
from reconciler.providers.base import Applied, Check, Desired, Observation, Observed, Provider
from reconciler.redact import masked
from reconciler.resource_status import ResourceStatus
from reconciler.state import (
    Intent,
    InventoryEntry,
    LockHolder,
    RunRecord,
    StateStore,
    Suspension,
    suspension_of,
)
from reconciler.state.locks import Lease, LockOptions, held


class Connector(Protocol):
    """Makes the provider that serves one configured target."""

    def __call__(self, target: str, config: TargetConfig, manifests: Manifests) -> Provider: ...


@dataclass(frozen=True)
class Planned:
    """A plan and what it was made from: what applying it needs besides the plan."""

    plan: Plan
    desired: Mapping[ResourceId, Desired]
    observations: Mapping[str, Observation]
    inventory: Mapping[ResourceId, Applied]
    graph: Graph

    def statuses(self) -> list[ResourceStatus]:
        """Each resource's sync and health (`reconciler.resource_status`)."""
        return resource_status.statuses(self.plan, self.graph, self.observations, self.inventory)

    def observed(self) -> dict[ResourceId, Observed]:
        # What was stopped but left something behind is what deleting it acts on.
        return {
            rid: observed
            for observation in self.observations.values()
            for rid, observed in (*observation.remains.items(), *observation.resources.items())
        }


class Session:
    """The providers of one run's targets; use as an async context manager."""

    def __init__(self, manifests: Manifests, connect: Connector, store: StateStore) -> None:
        self.manifests = manifests
        self.graph = graphs.build(manifests.resources)
        self.store = store
        self._connect = connect
        self._stack = AsyncExitStack()
        self.providers: dict[str, Provider] = {}
        self.lease: Lease | None = None
        """The targets' locks while `lock` holds them: checked before each mutating call."""
        self.recovered: tuple[str, ...] = ()
        """Resources found created by a killed run and recorded in the inventory."""
        self._abandoned = False
        """Whether what killed runs left open on these targets was closed (`recover`)."""
        self.inventory_digest = ""
        """Of the inventory as the last observation read it, before any recovery."""

    async def __aenter__(self) -> Session:
        settings = self.manifests.settings
        inventory_targets = self.store.inventory_targets()
        wanted = {rid.target for rid in self.graph.resources} | inventory_targets
        try:
            for target in sorted(wanted & set(settings.targets)):
                provider = self._connect(target, settings.targets[target], self.manifests)
                self._stack.push_async_callback(provider.aclose)
                self.providers[target] = provider
        except BaseException:
            await self._stack.aclose()  # the providers connected so far
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @asynccontextmanager
    async def lock(self, options: LockOptions, revision: str | None) -> AsyncIterator[None]:
        """Hold the apply lock of every target of the run (see `reconciler.state.locks`)."""
        async with held(
            self.store,
            sorted(self.providers),
            command=options.command,
            revision=revision,
            options=options,
        ) as lease:
            self.lease = lease
            self._abandoned = False
            try:
                yield
            finally:
                self.lease = None

    @property
    def locked(self) -> bool:
        return self.lease is not None

    async def observe(
        self, owned: Mapping[str, InventoryEntry], pending: Sequence[Intent]
    ) -> dict[str, Observation]:
        """Every target at once; a target that cannot be read fails the run. A provider
        that observes by scope is told what the inventory (`owned`) holds there, and what
        a killed run created and did not record (`pending`, for `recover`), wherever the
        manifests have moved since."""
        targets = sorted(self.providers)
        for target in targets:
            expect = getattr(self.providers[target], "expect", None)
            if callable(expect):
                ids = [e.id for e in owned.values() if e.target == target]
                ids += [i.resource for i in pending if i.call == "create" and i.target == target]
                found = (ResourceId.parse(i) for i in ids)
                expect(frozenset(rid for rid in found if rid is not None))
        answers = await asyncio.gather(
            *(self.providers[t].observe() for t in targets), return_exceptions=True
        )
        observations: dict[str, Observation] = {}
        failures = []
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, ReconcilerError):
                failures.append(f"cannot observe target '{target}': {answer}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                observations[target] = answer
        if failures:
            raise OperationalError("; ".join(failures) + " (nothing was changed)")
        return observations

    def desire(self) -> dict[ResourceId, Desired]:
        return {
            resource.id: self.providers[resource.target].desire(resource)
            for resource in self.manifests.resources
        }

    def recover(
        self,
        observations: Mapping[str, Observation],
        owned: Mapping[str, InventoryEntry],
        pending: Sequence[Intent],
    ) -> list[InventoryEntry]:
        """Resources a killed run created but did not record (not in `owned`, `pending`
        still), or whose create's answer was lost (`unknown`), seen in `observations`;
        written to the inventory when this session holds the locks, and the unknown
        intents settled: `ok` when the target shows the resource, else `failed`."""

        def shown(intent: Intent) -> bool:
            rid = ResourceId.parse(intent.resource)
            observation = observations.get(intent.target)
            return rid is not None and observation is not None and rid in observation.resources

        found: dict[str, InventoryEntry] = {}
        for intent in pending:
            if intent.call != "create" or intent.entry is None or intent.resource in owned:
                continue
            if shown(intent):
                found[intent.resource] = intent.entry
        if self.locked and not self._abandoned:
            unrecorded = dict(found)
            for intent in pending:
                if intent.outcome == "unknown" and intent.target in observations:
                    self.store.close_intent(
                        intent.id,
                        outcome="ok" if shown(intent) else "failed",
                        error=intent.error,
                        record=unrecorded.pop(intent.resource, None),
                    )
            for entry in unrecorded.values():
                self.store.record_applied(entry)
            self.store.abandon(tuple(sorted(self.providers)))
            # Once per session: under the same locks, nobody leaves anything after.
            self._abandoned = True
            self.recovered = tuple(sorted(found))
        return list(found.values())

    def owned(self) -> tuple[dict[str, InventoryEntry], list[Intent]]:
        """The inventory and the pending intents, read once for an observation and the
        plan made of it (10,000 entries take a while to decode)."""
        return self.store.inventory(), self.store.pending_intents()

    def inventory(
        self,
        observations: Mapping[str, Observation],
        owned: Mapping[str, InventoryEntry],
        pending: Sequence[Intent],
    ) -> dict[ResourceId, Applied]:
        """The inventory as the planner needs it, with what `recover` finds."""
        self.inventory_digest = inventory_digest(owned.values())
        recovered = self.recover(observations, owned, pending)
        result: dict[ResourceId, Applied] = {}
        entries = {**owned, **{e.id: e for e in recovered}}
        for entry in entries.values():
            rid = ResourceId.parse(entry.id)
            if rid is None:
                continue
            policy = "Orphan" if entry.deletion_policy == "Orphan" else "Delete"
            result[rid] = Applied(
                id=rid,
                digest=entry.digest,
                spec=entry.spec,
                fingerprints=entry.fingerprints,
                protect=entry.protect,
                deletion_policy=cast(Literal["Delete", "Orphan"], policy),
                adopted=entry.adopted,
                revision=entry.revision,
            )
        return result

    async def plan(self, options: PlanOptions, source: Source, *, signed: bool = True) -> Planned:
        if options.select:
            graphs.check_selectors(options.select, self.graph)
        # The CPU-heavy steps run in a worker thread, so that a server's event loop
        # (health checks, webhooks) stays responsive while 10,000 resources are planned;
        # the state store is used from this thread only.
        # Observed first: a provider normalises desired specs with what the target says
        # (pachd's cluster and project defaults).
        owned, pending = self.owned()
        observations = await self.observe(owned, pending)
        desired = await asyncio.to_thread(self.desire)
        inventory = self.inventory(observations, owned, pending)
        plan = await asyncio.to_thread(
            make_plan,
            desired,
            self.graph,
            observations,
            self.providers,
            inventory,
            options,
            source,
        )
        if signed:  # a plan to look at only (a refresh) need not read the state's key
            identity = self.store.identity()
            binding = Binding(
                identity.lineage, self.inventory_digest, tuple(sorted(self.providers))
            )
            plan = replace(plan, binding=binding).signed(identity.key)
        return Planned(plan, desired, observations, inventory, self.graph)

    async def apply(
        self,
        planned: Planned,
        options: ExecuteOptions,
        listener: Listener | None = None,
        stop: asyncio.Event | None = None,
        fence: Callable[[], None] | None = None,
    ) -> Outcome:
        """Apply; before each mutating call, the targets' locks are confirmed, and
        `fence` (a `serve` replica's lease on the source) is asked too."""
        if planned.plan.errors:
            raise OperationalError(
                "the plan cannot be applied:\n" + "\n".join(f"  {e}" for e in planned.plan.errors)
            )
        work = Work(
            planned.plan,
            planned.desired,
            planned.observed(),
            planned.inventory,
            self.providers,
            fence=_both(self.lease.check if self.lease is not None else None, fence),
        )
        return await execute(work, self.store, options, listener, stop)

    async def replan(self, saved: Plan) -> Planned:
        """A saved plan with what applying it needs now, or an error naming why not.

        A plan file is untrusted (it can be swapped between the plan job and the apply
        job), so it is applied only when it was signed by this state, was made against
        this state as it is now, spans the targets this session has, and when planning
        afresh with the options it records gives the very same actions: every guard
        (ownership, protect, --max-deletes, the mass-delete guard) runs again here."""
        identity = self.store.identity()
        if saved.binding.lineage != identity.lineage:
            raise _refused(
                f"the plan was made against another state (lineage {saved.binding.lineage},"
                f" this state is {identity.lineage}): make a new plan against this state"
            )
        if not saved.verify(identity.key):
            raise _refused(
                "the plan's signature does not match its content under this state's key:"
                " it was edited or forged after `reconciler plan --out` wrote it"
            )
        if tuple(sorted(self.providers)) != saved.binding.targets:
            raise _refused(
                f"the plan spans targets {', '.join(saved.binding.targets) or '(none)'}; this"
                f" run spans {', '.join(sorted(self.providers)) or '(none)'}: make a new plan"
            )
        if saved.options.select:
            graphs.check_selectors(saved.options.select, self.graph)
        owned, pending = self.owned()
        observations = await self.observe(owned, pending)
        desired = self.desire()
        inventory = self.inventory(observations, owned, pending)
        planned = Planned(saved, desired, observations, inventory, self.graph)
        moved = list(stale(saved, desired, planned.observed()))
        if self.inventory_digest != saved.binding.inventory:
            moved.append("the state's inventory changed since (another apply ran)")
        fresh = make_plan(
            desired, self.graph, observations, self.providers, inventory, saved.options
        )
        if not moved:
            moved.extend(_differences(saved, fresh))
        if moved:
            raise OperationalError(
                "the saved plan is stale; make a new plan. Moved since it was made:\n"
                + "\n".join(f"  {line}" for line in moved)
            )
        if fresh.errors:
            raise OperationalError(
                "the saved plan cannot be applied now:\n"
                + "\n".join(f"  {e}" for e in fresh.errors)
            )
        return planned


def plan_options(
    settings: Settings,
    *,
    select: Sequence[str] | None = None,
    with_dependencies: bool = True,
    prune: bool | None = None,
    max_deletes: int | None = None,
    allow_mass_delete: bool = False,
) -> PlanOptions:
    """The plan options of a run: the settings (profile applied) with the caller's
    overrides, the one place where they are put together."""
    defaults = PlanOptions()
    return PlanOptions(
        select=tuple(select or settings.select),
        with_dependencies=with_dependencies,
        prune=settings.prune if prune is None else prune,
        max_deletes=defaults.max_deletes if max_deletes is None else max_deletes,
        allow_mass_delete=allow_mass_delete,
    )


Approve = Callable[[Planned, tuple[str, ...]], bool]
"""Shown every plan an apply makes, with what crash recovery recorded; for a plan with
changes, True applies it."""
Progress = Callable[[Planned], AbstractContextManager[Listener | None]]
"""Around the execution of a plan: the listener of its progress (and whatever the caller
sets up meanwhile, such as a Ctrl-C handler)."""


@dataclass(frozen=True)
class Request:
    """What one reconcile is asked to do."""

    mode: Literal["plan", "apply"]
    options: PlanOptions
    source: Source
    saved: Plan | None = None
    """Apply exactly this saved plan (re-planned and compared, see `Session.replan`)."""
    lock: LockOptions = field(default_factory=LockOptions)
    execute: ExecuteOptions = field(default_factory=ExecuteOptions)
    approve: Approve | None = None
    """None: apply without asking."""
    progress: Progress | None = None
    stop: asyncio.Event | None = None
    """Set: no new calls (those in flight finish)."""
    held: frozenset[str] = frozenset()
    """Targets planned but not applied (automation suspended there)."""
    fence: Callable[[], None] | None = None
    """Raises `LockLost` when this process may no longer act for the source (a `serve`
    replica whose lease lapsed): asked before each mutating call."""
    refresh: bool = False
    """After an apply that made calls, observe and plan once more (`Result.refreshed`),
    as Argo CD refreshes after a sync: in the same session, still under the locks, so
    nothing else applies in between and the run connects and reads its settings once."""


@dataclass(frozen=True)
class Result:
    planned: Planned
    outcome: Outcome | None
    """None: nothing was applied (plan mode, no changes, plan errors, or not approved)."""
    recovered: tuple[str, ...] = ()
    refreshed: Planned | None = None
    """With `Request.refresh`, after calls were made: the targets as they are after them
    (an unsigned plan, for statuses only)."""


async def reconcile(
    manifests: Manifests, connect: Connector, store: StateStore, request: Request
) -> Result:
    """Plan, and in apply mode apply under the targets' locks: the one use case."""
    async with Session(manifests, connect, store) as session:
        if request.mode == "plan":
            return Result(await session.plan(request.options, request.source), None)
        async with session.lock(request.lock, request.execute.revision):
            if request.saved is not None:
                planned = await session.replan(request.saved)
            else:
                planned = await session.plan(request.options, request.source)
            recovered = session.recovered
            runnable = planned
            if request.held:
                runnable = replace(planned, plan=planned.plan.holding(request.held))
            # The result keeps the whole plan: what was held back is still drift.
            if runnable.plan.errors or not runnable.plan.pending:
                if request.approve is not None:
                    request.approve(runnable, recovered)
                return Result(planned, None, recovered)
            if request.approve is not None and not request.approve(runnable, recovered):
                return Result(planned, None, recovered)
            progress = request.progress(runnable) if request.progress else nullcontext(None)
            with progress as listener:
                outcome = await session.apply(
                    runnable, request.execute, listener, request.stop, request.fence
                )
            refreshed = None
            if request.refresh and outcome.results:
                refreshed = await session.plan(request.options, request.source, signed=False)
            return Result(planned, outcome, recovered, refreshed)


def _both(
    first: Callable[[], None] | None, second: Callable[[], None] | None
) -> Callable[[], None] | None:
    if first is None or second is None:
        return first or second

    def check() -> None:
        second()
        first()

    return check


def _refused(message: str) -> InputError:
    """A saved plan that belongs to another state or was altered: input that must not
    be applied, refused before any platform call."""
    return InputError(
        [Problem("--plan", message=message, hint="make a new plan: reconciler plan --out FILE")]
    )


def inventory_digest(entries: Iterable[InventoryEntry]) -> str:
    """What a saved plan records of the inventory it read: any entry added, removed or
    changed since gives another digest."""
    return digest(
        sorted(
            (e.id, e.digest, e.protect, e.deletion_policy, e.adopted, e.fingerprints)
            for e in entries
        )
    )


def _differences(saved: Plan, fresh: Plan) -> list[str]:
    """Where planning again now gives other actions than the saved plan holds."""

    def shape(action: Action) -> tuple[object, ...]:
        components = action.bounce.components if action.bounce else None
        return (action.action, action.adopt, action.restarts, components)

    before = {a.id: shape(a) for a in saved.actions if a.mutates or a.adopt}
    after = {a.id: shape(a) for a in fresh.actions if a.mutates or a.adopt}
    lines = []
    for rid in sorted(before.keys() | after.keys(), key=str):
        if before.get(rid) != after.get(rid):
            was = before[rid][0] if rid in before else "nothing"
            now = after[rid][0] if rid in after else "nothing"
            lines.append(f"{rid}: the plan says {was}, planning now says {now}")
    forgotten = {f.id for f in saved.forget} ^ {f.id for f in fresh.forget}
    lines.extend(f"{rid}: what the inventory drops changed" for rid in sorted(forgotten, key=str))
    return lines


def stale(
    saved: Plan, desired: Mapping[ResourceId, Desired], observed: Mapping[ResourceId, Observed]
) -> Sequence[str]:
    """Each resource the plan touches whose manifest or live state changed since."""
    moved = []
    for action in saved.actions:
        if not (action.mutates or action.adopt):
            continue
        want = desired.get(action.id)
        now_desired = digest(want.spec) if want is not None else None
        if action.action != "delete" and now_desired != action.desired_digest:
            moved.append(f"{action.id}: its manifest changed")
            continue
        live = observed.get(action.id)
        now_observed = digest(live.spec) if live is not None else None
        if now_observed != action.observed_digest:
            what = (
                "appeared"
                if action.observed_digest is None
                else ("was deleted" if now_observed is None else "changed")
            )
            moved.append(f"{action.id}: its live state {what} on the target")
    return moved


async def diagnose(manifests: Manifests, connect: Connector) -> dict[str, list[Check]]:
    """Every configured target's own checks (`reconciler doctor`), one target at a time."""
    results: dict[str, list[Check]] = {}
    for target, config in sorted(manifests.settings.targets.items()):
        provider = connect(target, config, manifests)
        try:
            results[target] = await provider.diagnose()
        finally:
            await provider.aclose()
    return results


@dataclass(frozen=True)
class TargetStatus:
    """`reconciler status` for one target: what is owned, who holds the lock, the last
    runs, and what a fresh observation finds different from the manifests."""

    target: str
    provider: str
    url: str
    managed: tuple[InventoryEntry, ...]
    lock: LockHolder | None
    runs: tuple[RunRecord, ...]
    drift: tuple[Action, ...] | None
    """Every action a plan would take now; None when the target could not be observed."""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    resources: tuple[ResourceStatus, ...] = ()
    """Each resource's sync and health, from the fresh observation (none without it)."""
    suspended: Suspension | None = None


async def status(
    manifests: Manifests, connect: Connector, store: StateStore, *, runs: int = 5
) -> list[TargetStatus]:
    """Every configured target's status; an unreachable target is reported, not raised."""
    plan: Plan | None = None
    error: str | None = None
    found: list[ResourceStatus] = []
    try:
        async with Session(manifests, connect, store) as session:
            planned = await session.plan(PlanOptions(prune=manifests.settings.prune), Source("."))
            plan = planned.plan
            found = planned.statuses()
    except OperationalError as exc:
        error = str(exc)
    return stored_status(manifests.settings, store, plan, error, runs=runs, resources=found)


def stored_status(
    settings: Settings,
    store: StateStore,
    plan: Plan | None,
    error: str | None,
    *,
    runs: int = 5,
    resources: Sequence[ResourceStatus] = (),
) -> list[TargetStatus]:
    """Each configured target's status from the state alone, with the drift `plan`
    finds (None: not observed, `error` says why). Needs no manifests: `status` works
    when they do not load (a broken commit during an incident)."""
    owned = store.inventory()
    locks = store.locks()
    suspensions = store.suspensions()
    result = []
    for target, config in sorted(settings.targets.items()):
        drift = None
        warnings: tuple[str, ...] = ()
        if plan is not None:
            drift = tuple(
                a for a in plan.actions if a.id.target == target and (a.mutates or a.adopt)
            )
            warnings = tuple(
                str(note) for note in (*plan.errors, *plan.warnings) if note.target == target
            )
        result.append(
            TargetStatus(
                target=target,
                provider=config.provider,
                url=masked(config.url),
                managed=tuple(e for e in owned.values() if e.target == target),
                lock=locks.get(target),
                runs=tuple(store.runs(runs, target=target)),
                drift=drift,
                warnings=warnings,
                error=masked(error) if error else None,
                resources=tuple(r for r in resources if r.id.target == target),
                suspended=suspension_of(suspensions, target),
            )
        )
    return result
