"""Layer 5: runs a plan through the providers, recording every mutating call in state.

Rule: imports layers 1-4 and libraries; never prints (progress goes to a `Listener`
the caller supplies) and never reads flags.

An asyncio ready-queue over the plan's `depends_on` edges: an action starts as soon as
every action it waits for has succeeded, at most `concurrency` at once. Each provider
call is written to the intent log before it is sent and closed when it answers, retried
with exponential backoff and jitter (`reconciler.retry`) while it raises a retryable error, and
cut off after `call_timeout`. When an action fails, every action that waits on it,
directly or not, is skipped with that reason; independent branches carry on. When
`stop` is set (Ctrl-C), nothing new starts, the calls in flight finish, and the rest is
reported as not started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from reconciler.diff import digest, sealed
from reconciler.errors import OperationalError, RetryableError
from reconciler.manifests import ResourceId
from reconciler.manifests.values import scrubbed
from reconciler.plan import Action, Plan
from reconciler.providers.base import (
    Applied,
    Desired,
    Observed,
    Provider,
    sealed_digests,
)
from reconciler.providers.http import FENCE
from reconciler.retry import Backoff, waited_too_long
from reconciler.state import InventoryEntry, StateStore
from reconciler.state.base import RunResult

log = logging.getLogger(__name__)

Status = Literal["ok", "failed", "skipped", "not started"]
_Call = tuple[str, Callable[[], Awaitable[None]]]
Phase = Literal["main", "cleanup"]


@dataclass(frozen=True, slots=True)
class ExecuteOptions:
    concurrency: int = 8
    attempts: int = 5
    """Tries per call, the first included, while the errors are retryable."""
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    call_timeout: float = 600.0
    revision: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    id: ResourceId
    action: str
    status: Status
    message: str = ""
    """Why it failed, was skipped or not started."""
    calls: tuple[str, ...] = ()
    """The provider calls made, in order, each with its number of tries when above one."""
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "calls": list(self.calls),
            "duration": round(self.duration, 3),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    results: tuple[ActionResult, ...]
    interrupted: bool
    run_id: int
    duration: float

    @property
    def result(self) -> RunResult:
        statuses = {r.status for r in self.results}
        if self.interrupted:
            return "interrupted"
        if "failed" in statuses or "skipped" in statuses:
            return "partial" if "ok" in statuses else "failed"
        return "succeeded"

    @property
    def ok(self) -> bool:
        return self.result == "succeeded"

    def counts(self) -> dict[str, int]:
        counts = {"ok": 0, "failed": 0, "skipped": 0, "not started": 0}
        for result in self.results:
            counts[result.status] += 1
        return counts


class Listener(Protocol):
    """Told about progress, for a progress bar or one line per action."""

    def started(self, action: Action) -> None: ...

    def finished(self, result: ActionResult) -> None: ...


class _Quiet:
    def started(self, action: Action) -> None:
        pass

    def finished(self, result: ActionResult) -> None:
        pass


@dataclass(frozen=True)
class Work:
    """Everything a plan's actions need that the plan, being data, does not hold."""

    plan: Plan
    desired: Mapping[ResourceId, Desired]
    observed: Mapping[ResourceId, Observed]
    inventory: Mapping[ResourceId, Applied]
    providers: Mapping[str, Provider]
    fence: Callable[[], None] | None = None
    """Raises unless this run still holds its targets' locks; called before every
    mutating call. A failure stops the run: nothing new starts."""


async def execute(
    work: Work,
    store: StateStore,
    options: ExecuteOptions = ExecuteOptions(),
    listener: Listener | None = None,
    stop: asyncio.Event | None = None,
) -> Outcome:
    """Apply `work.plan`; never raises for a failed action (see the outcome)."""
    runner = _Runner(work, store, options, listener or _Quiet(), stop or asyncio.Event())
    return await runner.run()


class _Schedule:
    """Which actions may start: those whose dependencies in the plan are done. A
    create-before-delete replace deletes the old generation only once everything that
    depends on it has moved on (finished, in whatever way)."""

    def __init__(self, actions: Sequence[Action]) -> None:
        ids = {a.id for a in actions}
        self.by_id = {a.id: a for a in actions}
        self.waiting = {a.id: set(a.depends_on) & ids for a in actions}
        self.dependents: dict[ResourceId, list[ResourceId]] = {}
        for action in actions:
            for dependency in self.waiting[action.id]:
                self.dependents.setdefault(dependency, []).append(action.id)
        self.ready: list[tuple[ResourceId, Phase]] = [
            (a.id, "main") for a in actions if not self.waiting[a.id]
        ]
        self.cleanups: dict[ResourceId, set[ResourceId]] = {}
        self.created: dict[ResourceId, ActionResult] = {}
        """Replaces whose new generation is made and whose old one awaits deletion."""

    def release(self, rid: ResourceId, finished: Mapping[ResourceId, ActionResult]) -> None:
        for dependent in self.dependents.get(rid, ()):
            self.waiting[dependent].discard(rid)
            if not self.waiting[dependent] and dependent not in finished:
                self.ready.append((dependent, "main"))

    def defer_cleanup(self, rid: ResourceId, created: ActionResult) -> None:
        self.created[rid] = created
        self.cleanups[rid] = set(self.dependents.get(rid, ()))

    def cleanups_due(self, finished: Mapping[ResourceId, ActionResult]) -> None:
        for owner in sorted(self.cleanups, key=str):
            self.cleanups[owner] -= set(finished)
            if not self.cleanups[owner]:
                del self.cleanups[owner]
                self.ready.append((owner, "cleanup"))


class _Runner:
    def __init__(
        self,
        work: Work,
        store: StateStore,
        options: ExecuteOptions,
        listener: Listener,
        stop: asyncio.Event,
    ) -> None:
        self.work = work
        self.store = store
        self.options = options
        self.listener = listener
        self.stop = stop
        self.run_id = 0
        self.results: dict[ResourceId, ActionResult] = {}

    async def run(self) -> Outcome:
        started = time.monotonic()
        self._begin()
        actions = [a for a in self.work.plan.actions if a.mutates or a.adopt]
        schedule = _Schedule(actions)
        await self._drive(schedule)
        return self._close(actions, schedule, started)

    def _begin(self) -> None:
        """The run recorded, the inventory's forgets done, unchanged resources refreshed."""
        plan = self.work.plan
        self.run_id = self.store.begin_run(
            "apply",
            revision=self.options.revision,
            profile=self.options.profile,
            plan=plan.to_json(),
            targets=tuple(
                sorted(
                    {a.id.target for a in plan.actions if a.mutates or a.adopt}
                    | {f.id.target for f in plan.forget}
                )
            ),
        )
        for forgotten in plan.forget:
            self.store.forget(str(forgotten.id))
        self._refresh_noops()

    async def _drive(self, schedule: _Schedule) -> None:
        """Every action once its dependencies are done, `concurrency` at a time, until
        all are done or skipped, or `stop` is set."""
        running: dict[asyncio.Task[ActionResult], tuple[ResourceId, Phase]] = {}
        while schedule.ready or running:
            while (
                schedule.ready
                and len(running) < self.options.concurrency
                and not self.stop.is_set()
            ):
                rid, phase = schedule.ready.pop(0)
                action = schedule.by_id[rid]
                self.listener.started(action)
                running[asyncio.create_task(self._one(action, phase))] = (rid, phase)
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: str(running[t][0])):
                rid, phase = running.pop(task)
                self._landed(schedule, rid, phase, task.result())
            schedule.cleanups_due(self.results)

    def _landed(
        self, schedule: _Schedule, rid: ResourceId, phase: Phase, result: ActionResult
    ) -> None:
        if phase == "cleanup":
            self._finish(_joined(schedule.created.pop(rid), result))
        elif result.status == "ok" and _deferred_delete(schedule.by_id[rid]):
            schedule.defer_cleanup(rid, result)
            schedule.release(rid, self.results)
        else:
            self._finish(result)
            if result.status == "ok":
                schedule.release(rid, self.results)
            else:
                self._skip_dependents(rid, schedule.dependents, schedule.by_id)

    def _close(self, actions: list[Action], schedule: _Schedule, started: float) -> Outcome:
        """What did not finish said so, the outcome recorded."""
        for result in schedule.created.values():
            self._finish(
                replace(
                    result,
                    status="failed",
                    message="created; the old one was not deleted (interrupted): apply again",
                )
            )
        interrupted = False
        for action in actions:
            if action.id not in self.results:
                interrupted = True
                self._finish(ActionResult(action.id, action.action, "not started", "interrupted"))
        outcome = Outcome(
            tuple(self.results[a.id] for a in actions),
            interrupted and self.stop.is_set(),
            self.run_id,
            time.monotonic() - started,
        )
        self.store.finish_run(self.run_id, outcome.result, [r.to_json() for r in outcome.results])
        return outcome

    def _finish(self, result: ActionResult) -> None:
        self.results[result.id] = result
        self.listener.finished(result)

    def _skip_dependents(
        self,
        failed: ResourceId,
        dependents: Mapping[ResourceId, Sequence[ResourceId]],
        by_id: Mapping[ResourceId, Action],
    ) -> None:
        queue = list(dependents.get(failed, ()))
        while queue:
            rid = queue.pop(0)
            if rid in self.results:
                continue
            self._finish(
                ActionResult(rid, by_id[rid].action, "skipped", f"skipped: {failed} failed")
            )
            queue.extend(dependents.get(rid, ()))

    async def _one(self, action: Action, phase: Phase) -> ActionResult:
        started = time.monotonic()
        calls: list[str] = []
        try:
            for name, call in self._calls(action, phase):
                tries = await self._call(action, name, call)
                calls.append(name if tries == 1 else f"{name} x{tries}")
            if phase == "main":
                self._remember(action)
        except OperationalError as exc:
            return ActionResult(
                action.id,
                action.action,
                "failed",
                str(exc),
                tuple(calls),
                time.monotonic() - started,
            )
        except Exception as exc:  # a provider's bug must not take the other actions down
            said = self._said(action.id, str(exc))
            if said != str(exc):
                exc.args = (said,)  # the traceback that --debug prints says it too
            message = f"internal error in the provider: {type(exc).__name__}: {said}"
            # Kept for whoever fixes it: `--debug` or RECONCILER_LOG=debug prints it.
            log.debug("%s: %s", action.id, message, exc_info=exc)
            return ActionResult(
                action.id,
                action.action,
                "failed",
                message,
                tuple(calls),
                time.monotonic() - started,
            )
        return ActionResult(
            action.id, action.action, "ok", "", tuple(calls), time.monotonic() - started
        )

    def _calls(self, action: Action, phase: Phase) -> list[_Call]:
        rid = action.id
        provider = self.work.providers[rid.target]
        desired = self.work.desired.get(rid)
        observed = self.work.observed.get(rid)
        applied = self.work.inventory.get(rid)
        components = action.bounce.components if action.bounce else None

        def need_desired() -> Desired:
            if desired is None:
                raise OperationalError(f"{rid}: not in the manifests any more")
            return desired

        def need_observed() -> Observed:
            if observed is None:
                raise OperationalError(f"{rid}: no longer on the target")
            return observed

        if action.action == "create":
            return [("create", lambda: provider.create(need_desired()))]
        if action.action == "patch":
            calls: list[_Call] = [
                ("patch", lambda: provider.patch(need_desired(), need_observed(), action.changes))
            ]
            if action.bounce is not None:
                calls.append(("bounce", lambda: provider.bounce(need_desired(), components)))
            return calls
        if action.action == "bounce":
            return [("bounce", lambda: provider.bounce(need_desired(), components))]
        if action.action == "delete":
            return [("delete", lambda: provider.delete(rid, need_observed(), applied))]
        if action.action == "replace":
            create = ("create", lambda: provider.create(need_desired()))
            delete = ("delete", lambda: provider.delete(rid, need_observed(), applied))
            if action.delete_before_replace:
                return [delete, create]
            return [create] if phase == "main" else [delete]
        return []  # noop: adopted, recorded by _remember

    async def _call(self, action: Action, name: str, call: Callable[[], Awaitable[None]]) -> int:
        # A create's intent carries the entry it will record: killed after the platform
        # made the resource but before the answer came, the next run still knows it is
        # ours; once it answers, closing the intent records the entry in one transaction.
        desired = self.work.desired.get(action.id)
        entry = (
            self._entry(desired, adopted=False)
            if name == "create" and desired is not None
            else None
        )
        if self.work.fence is not None:
            try:
                self.work.fence()
            except OperationalError:
                self.stop.set()  # nothing new starts; the calls in flight finish
                raise
        intent = self.store.open_intent(self.run_id, str(action.id), action.action, name, entry)
        tries = 0
        # Whether a failed try may have been carried out (`refused` false: its answer
        # lost, or a wait after it failed). A create retried after that meets its own
        # resource ("already exists"); its intent stays open as `unknown`, and the next
        # run, seeing the resource, records it as ours from the entry, as after a kill
        # (instead of adopting it, not knowing what was sent, and redeploying it).
        lost = False
        retrying = self._backoff.retrying()
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    fenced = FENCE.set(self.work.fence)
                    try:
                        async with asyncio.timeout(self.options.call_timeout):
                            await call()
                    except TimeoutError:
                        lost = True
                        raise RetryableError(
                            f"{action.id}: {name} did not answer within"
                            f" {self.options.call_timeout:g}s"
                        ) from None
                    except OperationalError as exc:
                        lost = lost or not exc.refused
                        raise
                    finally:
                        FENCE.reset(fenced)
        except OperationalError as exc:
            unknown = lost and entry is not None
            said = self._said(action.id, str(exc))
            self.store.close_intent(intent, outcome="unknown" if unknown else "failed", error=said)
            gave_up = f" (gave up after {tries} tries)" if tries > 1 else ""
            maybe = (
                "; a failed try may have been carried out, and so have made it: the next"
                " run records it as ours if the target shows it"
                if unknown
                else ""
            )
            # The same error, its message prefixed: its class and what it carries (an
            # HTTP status, a gRPC code, Retry-After) stay as the platform gave them.
            exc.args = (f"{name}: {said}{gave_up}{maybe}{waited_too_long(exc, self._backoff)}",)
            raise
        except BaseException as exc:
            # Cancelled or broken mid-call: whether a create was carried out is not known.
            self.store.close_intent(
                intent,
                outcome="unknown" if entry is not None else "failed",
                error=self._said(action.id, str(exc)) or type(exc).__name__,
            )
            raise
        self.store.close_intent(intent, outcome="ok", record=entry)
        return tries

    def _said(self, rid: ResourceId, text: str) -> str:
        """A platform's (or a provider's) words about an action, without the sensitive
        values the action sent: some platforms echo a request's values in their errors,
        and this text is printed, logged and stored."""
        desired = self.work.desired.get(rid)
        return scrubbed(text, desired.spec) if desired is not None else text

    @property
    def _backoff(self) -> Backoff:
        return Backoff(
            self.options.attempts,
            self.options.backoff_initial,
            self.options.backoff_max,
            longest_wait=self.options.call_timeout,
        )

    def _remember(self, action: Action) -> None:
        rid = action.id
        if action.action == "delete":
            self.store.forget(str(rid))
            return
        desired = self.work.desired[rid]
        self.store.record_applied(self._entry(desired, adopted=action.adopt))

    def _entry(self, desired: Desired, *, adopted: bool) -> InventoryEntry:
        rid = desired.id
        rules = self.work.providers[rid.target].rules(rid.kind)
        metadata = desired.resource.metadata
        return InventoryEntry(
            id=str(rid),
            target=rid.target,
            kind=rid.kind,
            digest=digest(desired.spec),
            revision=self.options.revision,
            adopted=adopted,
            spec=sealed(dict(desired.spec)),
            fingerprints={**desired.fingerprints, **sealed_digests(desired.spec, rules)},
            protect=metadata.protect,
            deletion_policy=metadata.deletion_policy,
        )

    def _refresh_noops(self) -> None:
        """Owned resources left alone keep their inventory entry current (a changed
        `protect` or `deletionPolicy` matters once the manifest is gone)."""
        for action in self.work.plan.actions:
            applied = self.work.inventory.get(action.id)
            desired = self.work.desired.get(action.id)
            if action.mutates or applied is None or desired is None:
                continue
            metadata = desired.resource.metadata
            if (
                applied.digest != digest(desired.spec)
                or applied.protect != metadata.protect
                or applied.deletion_policy != metadata.deletion_policy
            ):
                self.store.record_applied(self._entry(desired, adopted=applied.adopted))


def _deferred_delete(action: Action) -> bool:
    return action.action == "replace" and not action.delete_before_replace


def _joined(first: ActionResult, second: ActionResult) -> ActionResult:
    return replace(
        second,
        calls=first.calls + second.calls,
        duration=first.duration + second.duration,
    )
