"""One run of `reconciler serve`: fetch the source, load, plan, and in apply mode apply.

A run never raises: whatever happens becomes its report (`result` one of `succeeded`,
`drift` (plan mode found changes), `failed`, `invalid`), its metrics and its log lines.
In apply mode the run holds the targets' locks like `reconciler apply` does, waiting up
to `lock_timeout` for a CI job that holds them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from reconciler import checkout
from reconciler.checkout import Checkout, Origin
from reconciler.errors import InputError, ReconcilerError
from reconciler.execute import ExecuteOptions, Outcome
from reconciler.manifests import LoadOptions, Manifests, load
from reconciler.plan import Action, Plan, Source
from reconciler.reconcile import Connector, Request, plan_options, reconcile
from reconciler.resource_status import ResourceStatus, counts
from reconciler.server.hooks import Trigger
from reconciler.server.logs import event
from reconciler.server.metrics import Metrics
from reconciler.server.notify import Notifier, RunFacts
from reconciler.server.schedule import Every, Schedule
from reconciler.state import KeptStores, open_store, suspension_of
from reconciler.state.locks import LockLost, LockOptions

Mode = Literal["plan", "apply"]
Result = Literal["succeeded", "drift", "failed", "invalid"]

log = logging.getLogger("reconciler.server")


@dataclass(frozen=True)
class ServeOptions:
    source: str
    """A manifests folder or a git URL (URL//folder)."""
    ref: str | None = None
    """With a git URL: the branch to follow (default: the remote's default branch)."""
    branch: str = "main"
    """The branch whose push events trigger a run."""
    profile: str | None = None
    mode: Mode = "plan"
    schedule: Schedule = field(default_factory=lambda: Every(300.0))
    prune: bool | None = None
    max_deletes: int = 10
    allow_mass_delete: bool = False
    lock_timeout: float = 300.0
    concurrency: int = 8
    github_secret: str | None = None
    gitlab_token: str | None = None
    generic_token: str | None = None
    ui_token: str | None = None
    """Opens the web UI and its actions (default: the generic webhook's token)."""
    ui_public: bool = False
    """Read-only pages open to anyone who reaches the server."""


@dataclass
class RunReport:
    number: int
    trigger: Trigger
    started_at: float
    finished_at: float | None = None
    revision: str | None = None
    result: Result | None = None
    error: str | None = None
    planned: dict[str, int] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=dict)
    drifted: dict[str, list[str]] = field(default_factory=dict)
    run_id: int | None = None
    """The run's record in the state store, when it applied anything."""
    held: list[str] = field(default_factory=list)
    """Targets where automation was suspended: planned, not applied."""
    plan: list[dict[str, Any]] = field(default_factory=list)
    """What the plan would change (its actions other than noops), as the plan's JSON."""
    results: list[dict[str, Any]] = field(default_factory=list)
    """What each applied action did: status, platform message, calls."""
    refusals: list[str] = field(default_factory=list)
    """Why a guard refused the plan (its errors)."""
    trimmed: bool = False
    """Its plan and results were let go (newer runs' fill the budget of lines kept)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "trigger": self.trigger.reason,
            "announced_revision": self.trigger.revision,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "revision": self.revision,
            "result": self.result,
            "error": self.error,
            "planned": self.planned,
            "executed": self.executed,
            "drift": {target: len(ids) for target, ids in self.drifted.items()},
            "state_run_id": self.run_id,
            "suspended_targets": self.held,
        }

    def to_record(self, *, details: bool = True) -> dict[str, Any]:
        """Everything of the report, to be read back by `from_record` (another replica's
        web UI shows it); without its plan and results when `details` is false. Shallow:
        what it holds is only serialised, and a deep copy of every published run after
        every run was a replica's largest cost past the platform calls."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["trigger"] = asdict(self.trigger)
        if not details and (self.plan or self.results):
            record.update(plan=[], results=[], trimmed=True)
        return record

    @property
    def lines(self) -> int:
        """Plan and result lines held."""
        return len(self.plan) + len(self.results)

    @staticmethod
    def from_record(data: dict[str, Any]) -> RunReport:
        return RunReport(**{**data, "trigger": Trigger(**data["trigger"])})


HISTORY = 200
"""Runs kept in memory for the web UI (the state store keeps every applying run)."""
PLAN_KEPT = 1000
"""Actions kept per run for the web UI; the plan's summary counts them all."""
HISTORY_LINES = 20_000
"""Plan and result lines kept over all of a source's runs in memory, newest runs first;
older runs keep their summary. A run that plans a thousand actions and fails to apply
them (a target that refuses writes), again on every schedule, would otherwise hold
HISTORY x 2 x PLAN_KEPT lines per source for as long as the outage lasts."""


@dataclass(frozen=True)
class Snapshot:
    """Sync and health of every resource, as one run saw them."""

    run: int
    at: float
    statuses: tuple[ResourceStatus, ...]


STORE_IDLE = 60.0
"""Seconds a source's state store stays open after its last run."""

SEEN_KEPT = 50
"""Runs a replica publishes of a source for the others' web UI."""
SEEN_LINES = 5_000
"""Plan and result lines published over those runs, newest first (what is published
after every run is written to PostgreSQL and read back by every other replica's page)."""


def shown(action: Action) -> dict[str, Any]:
    """What the run page shows of a planned action: never its changes (the values, whole
    specs on a create, are the plan's, and the page does not show them)."""
    return {
        "id": str(action.id),
        "action": action.action,
        "reasons": list(action.reasons),
        "step": action.step,
        "bounce": action.bounce is not None,
        "adopt": action.adopt,
    }


def within(reports: Iterable[RunReport], budget: int) -> Iterator[tuple[RunReport, bool]]:
    """Each report, newest first, with whether its details fit in what is left of
    `budget` lines (once one does not, no older one does either)."""
    for report in reports:
        fits = report.lines <= budget
        budget = budget - report.lines if fits else -1
        yield report, fits


class Runner:
    """Makes runs and remembers the last one, and the last per target."""

    def __init__(
        self,
        options: ServeOptions,
        connect: Connector,
        metrics: Metrics,
        notifier: Notifier | None = None,
    ) -> None:
        self.options = options
        self.connect = connect
        self.metrics = metrics
        self.notifier = notifier
        self.gate: asyncio.Semaphore | None = None
        """Shared by the sources of one service: how many of them run at once."""
        self.locking = LockOptions(timeout=options.lock_timeout, command="serve")
        """How a run takes its targets' locks (a replica: as itself, over the replica it
        took the source from)."""
        self.fence: Callable[[], None] | None = None
        """A replica's lease on the source: asked before a run and each mutating call."""
        self.published: Callable[[], Awaitable[None]] | None = None
        """Called after each run: a replica tells the others what it saw."""
        self.count = 0
        self.last: RunReport | None = None
        self.current: RunReport | None = None
        self.by_target: dict[str, RunReport] = {}
        self.targets: tuple[str, ...] = ()
        self.history: deque[RunReport] = deque(maxlen=HISTORY)
        """The last runs, newest first, with their plans and results (the runs page)."""
        self.resources: Snapshot | None = None
        """Each resource's sync and health as the last run that observed them saw."""
        self.state: tuple[str, Path] | None = None
        """The state store the last run loaded (its URL and the manifests root)."""
        self.stores = KeptStores(open_store)
        """That store, kept open between runs (a service of many sources shares one
        `KeptStores` among them); closed by `close`."""

    def close(self) -> None:
        """The state store kept between runs, closed (at shutdown, or when a replica
        lets the source go)."""
        if self.state is not None:
            self.stores.forget(*self.state)

    async def __call__(self, trigger: Trigger) -> None:
        if self.fence is not None:
            try:
                self.fence()
            except ReconcilerError as exc:  # no longer ours: nothing runs here
                event(log, "run not started", logging.WARNING, trigger=trigger.reason, why=str(exc))
                return
        if self.gate is None:
            await self._call(trigger)
        else:
            async with self.gate:  # runs of several sources at once, at most
                await self._call(trigger)
        if self.published is not None:
            await self.published()

    async def _call(self, trigger: Trigger) -> None:
        self.count += 1
        report = RunReport(self.count, trigger, time.time())
        self.current = report
        started = time.monotonic()
        event(
            log,
            "run started",
            run=report.number,
            trigger=trigger.reason,
            announced_revision=trigger.revision,
            mode=self.options.mode,
        )
        try:
            await self._run(report)
        except InputError as exc:
            report.result = "invalid"
            report.error = "; ".join(p.format().splitlines()[0] for p in exc.problems[:5])
            self.metrics.errors.labels("invalid input").inc()
        except ReconcilerError as exc:
            report.result = "failed"
            report.error = self._why(exc)
            self.metrics.errors.labels("operational").inc()
        except Exception as exc:  # a bug must not stop the server: report it and go on
            report.result = "failed"
            report.error = f"internal error: {type(exc).__name__}: {exc}"
            self.metrics.errors.labels("internal").inc()
            log.exception("internal error in a run")
        report.finished_at = time.time()
        self._record(report, time.monotonic() - started)
        if self.notifier is not None:
            fresh = (
                self.resources if self.resources and self.resources.run == report.number else None
            )
            self.notifier.finished(
                RunFacts(
                    report.number,
                    report.result or "failed",
                    report.error,
                    report.revision,
                    tuple(report.refusals),
                    report.drifted,
                    self._applies(report),
                    tuple(report.held),
                ),
                fresh.statuses if fresh is not None else None,
            )

    def _why(self, exc: ReconcilerError) -> str:
        """Why a run failed. A replica that lost its lease while its run was under way
        (paused past it: PostgreSQL ended the session it left inside a transaction, and
        the next statement fails) says that first, not only the error it met."""
        if self.fence is not None and not isinstance(exc, LockLost):
            try:
                self.fence()
            except ReconcilerError as lost:
                return f"{lost} (the run stopped at: {exc})"
        return str(exc)

    def _applies(self, report: RunReport) -> bool:
        return self.options.mode == "apply" and not report.trigger.plan

    async def _run(self, report: RunReport) -> None:
        options = self.options
        fetched: Checkout = await asyncio.to_thread(
            checkout.fetch, Origin.parse(options.source, options.ref)
        )
        report.revision = fetched.revision
        manifests = await asyncio.to_thread(
            load, fetched.folder, LoadOptions(profile=options.profile, cache=True)
        )
        self.targets = tuple(sorted(manifests.settings.targets))
        if self.notifier is not None:
            self.notifier.config = manifests.settings.notifications
            self.notifier.started(report.number, report.revision, self._applies(report))
        request = Request(
            "plan" if report.trigger.plan else options.mode,
            plan_options(
                manifests.settings,
                prune=options.prune,
                max_deletes=options.max_deletes,
                allow_mass_delete=options.allow_mass_delete,
            ),
            Source(fetched.origin.shown, fetched.revision, manifests.settings.profile),
            lock=self.locking,
            execute=ExecuteOptions(
                concurrency=options.concurrency,
                revision=fetched.revision,
                profile=manifests.settings.profile,
            ),
        )
        self.state = (manifests.settings.state, manifests.root)
        store = self.stores.take(*self.state)
        try:
            suspensions = store.suspensions()
            held = frozenset(t for t in self.targets if suspension_of(suspensions, t))
            report.held = sorted(held)
            # What was applied is seen again (refresh): the statuses show the targets as
            # they are after the run, not as they were before it.
            asked = replace(request, held=held, fence=self.fence, refresh=True)
            result = await reconcile(manifests, self.connect, store, asked)
            seen = result.refreshed or result.planned
        except BaseException:
            store.close()  # perhaps why the run failed: the next run opens its own
            raise
        self.stores.give_back(*self.state, store)
        asyncio.get_running_loop().call_later(STORE_IDLE, self.stores.expire, STORE_IDLE)
        self.resources = Snapshot(report.number, time.time(), tuple(seen.statuses()))
        self._planned(report, manifests, result.planned.plan, result.outcome)

    def _planned(
        self, report: RunReport, manifests: Manifests, plan: Plan, outcome: Outcome | None
    ) -> None:
        report.planned = {k: n for k, n in plan.summary().items() if n and k != "noop"}
        report.plan = [shown(a) for a in plan.actions if a.mutates or a.adopt][:PLAN_KEPT]
        for kind, count in report.planned.items():
            self.metrics.planned.labels(kind).inc(count)
        drifted: dict[str, list[str]] = {t: [] for t in manifests.settings.targets}
        done = {r.id for r in outcome.results if r.status == "ok"} if outcome else set()
        for action in plan.actions:
            if (action.mutates or action.adopt) and action.id not in done:
                drifted.setdefault(action.id.target, []).append(str(action.id))
        report.drifted = drifted
        if outcome is not None:
            report.run_id = outcome.run_id
            report.results = [r.to_json() for r in outcome.results][:PLAN_KEPT]
            for result in outcome.results:
                report.executed[result.status] = report.executed.get(result.status, 0) + 1
                self.metrics.actions.labels(result.id.target, result.action, result.status).inc()
        if plan.errors:
            report.result = "failed"
            report.refusals = [str(e) for e in plan.errors]
            report.error = "; ".join(report.refusals)
            self.metrics.errors.labels("plan").inc()
        elif outcome is not None and not outcome.ok:
            report.result = "failed"
            failed = [f"{r.id}: {r.message}" for r in outcome.results if r.status == "failed"]
            report.error = f"apply {outcome.result}: " + "; ".join(failed[:5])
            self.metrics.errors.labels("apply").inc()
        elif ((self.options.mode == "plan" or report.trigger.plan) and plan.pending) or any(
            report.drifted.get(t) for t in report.held
        ):
            report.result = "drift"  # found, not applied: plan mode, or held by a suspension
        else:
            report.result = "succeeded"

    def _record(self, report: RunReport, seconds: float) -> None:
        result = report.result or "failed"
        self.metrics.runs.labels(result, report.trigger.reason).inc()
        self.metrics.duration.observe(seconds)
        for target in self.targets:
            ids = report.drifted.get(target)
            # A run that failed before it planned knows nothing of drift: NaN, not 0.
            known = ids is not None and report.result != "invalid"
            self.metrics.drifted.labels(target).set(
                len(ids) if known and ids is not None else float("nan")
            )
            self.metrics.drift_known.labels(target).set(1 if known else 0)
            self.metrics.target_runs.labels(target, result).inc()
        if self.resources is not None and self.resources.run == report.number:
            self.metrics.observed(self.resources.statuses, self.targets)
        if result in ("succeeded", "drift"):
            self.metrics.last_success.set(report.finished_at or time.time())
        self.last = report
        self.remember(report)
        self.current = None
        for target in report.drifted or dict.fromkeys(self.targets):
            self.by_target[target] = report
        level = logging.INFO if result in ("succeeded", "drift") else logging.ERROR
        event(log, "run finished", level, **report.to_json(), seconds=round(seconds, 3))

    def remember(self, report: RunReport) -> None:
        """The report, newest in the history; older runs' plans and results let go
        beyond `HISTORY_LINES`."""
        self.history.appendleft(report)
        for older, fits in within(self.history, HISTORY_LINES):
            if not fits and older.lines:
                older.plan, older.results, older.trimmed = [], [], True

    def seen(self) -> dict[str, Any]:
        """What this runner saw, for the web UI of replicas that do not own the source."""
        snapshot = self.resources
        return {
            "targets": list(self.targets),
            "state": self.state[0] if self.state else None,
            "snapshot": None
            if snapshot is None
            else {
                "run": snapshot.run,
                "at": snapshot.at,
                "statuses": [s.to_json() for s in snapshot.statuses],
            },
            "history": [
                r.to_record(details=fits)
                for r, fits in within(itertools.islice(self.history, SEEN_KEPT), SEEN_LINES)
            ],
            "by_target": {t: r.number for t, r in self.by_target.items()},
        }

    def show(self, seen: dict[str, Any]) -> None:
        """Take what the source's owner published as this runner's own (for pages only:
        this replica runs nothing of it)."""
        self.targets = tuple(seen["targets"])
        if seen.get("state"):
            self.state = (seen["state"], Path())
        history = [RunReport.from_record(r) for r in seen["history"]]
        self.history = deque(history, maxlen=HISTORY)
        self.last = history[0] if history else None
        numbered = {r.number: r for r in history}
        self.by_target = {t: numbered[n] for t, n in seen["by_target"].items() if n in numbered}
        snapshot = seen.get("snapshot")
        self.resources = (
            None
            if snapshot is None
            else Snapshot(
                snapshot["run"],
                snapshot["at"],
                tuple(ResourceStatus.from_json(s) for s in snapshot["statuses"]),
            )
        )

    def status(self) -> dict[str, Any]:
        """Per target: the last run that covered it, its revision, result and drift, and
        its resources' sync and health as the last observation saw them."""
        targets: dict[str, Any] = {}
        seen = self.resources.statuses if self.resources is not None else ()
        tallies = counts(seen)
        for target, report in sorted(self.by_target.items()):
            ids = report.drifted.get(target)
            attention = [
                s.to_json()
                for s in seen
                if s.id.target == target
                and s.managed
                and (s.sync != "synced" or s.health.state != "healthy")
            ]
            targets[target] = {
                "resources": tallies.get(target, {}),
                "attention": attention[:100],
                "last_run": report.number,
                "finished_at": report.finished_at,
                "revision": report.revision,
                "result": report.result,
                "error": report.error,
                "drift": None if ids is None else len(ids),
                "drifted": None if ids is None else ids[:100],
            }
        return {
            "last_run": self.last.to_json() if self.last else None,
            "running": self.current.to_json() if self.current else None,
            "targets": targets,
        }
