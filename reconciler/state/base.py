"""The state store's records and interface, shared by every backend."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

IntentOutcome = Literal["pending", "ok", "failed", "unknown", "abandoned"]
"""`pending` while the call is in flight (or its run was killed); `ok` and `failed` as it
answered; `unknown` a create that failed after a try that may have been carried out (an
answer lost, a wait after it that failed: the next run looks); `abandoned` closed by the
run after a killed one."""
Closing = Literal["ok", "failed", "unknown"]
RunResult = Literal["running", "succeeded", "failed", "partial", "interrupted"]


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    """A resource this reconciler owns."""

    id: str
    target: str
    kind: str
    digest: str
    """The digest of the normalised spec last applied."""
    revision: str | None
    adopted: bool
    updated_at: float = 0.0
    spec: dict[str, Any] = field(default_factory=dict)
    """The normalised spec last applied, sensitive values as digests (never in clear)."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Digests of what the platform cannot show back (secret data, package files)."""
    protect: bool = False
    deletion_policy: str = "Delete"
    """From the manifest as last applied: pruning needs them once the manifest is gone."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "kind": self.kind,
            "digest": self.digest,
            "revision": self.revision,
            "adopted": self.adopted,
            "updated_at": self.updated_at,
            "spec": self.spec,
            "fingerprints": self.fingerprints,
            "protect": self.protect,
            "deletion_policy": self.deletion_policy,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> InventoryEntry:
        return InventoryEntry(**data)


@dataclass(frozen=True, slots=True)
class Intent:
    """A mutating call: written before it is sent, closed when it answers. A create's
    intent carries the inventory entry it will record, so that a run killed between the
    call and the record still leaves the resource owned (see `reconciler.reconcile`)."""

    id: int
    run_id: int
    resource: str
    action: str
    call: str
    started_at: float
    outcome: IntentOutcome
    finished_at: float | None = None
    error: str | None = None
    entry: InventoryEntry | None = None

    @property
    def target(self) -> str:
        return self.resource.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    command: str
    revision: str | None
    profile: str | None
    started_at: float
    result: RunResult
    finished_at: float | None = None
    plan: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a target's apply lock. `token` is the holder's secret proof of holding:
    only its holder can refresh or release the lock."""

    target: str
    token: str
    host: str
    pid: int
    command: str
    revision: str | None
    since: float
    heartbeat: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        revision = f", revision {self.revision}" if self.revision else ""
        return f"{self.command} on host {self.host} (pid {self.pid}) since {since}{revision}"


ALL_TARGETS = "*"


@dataclass(frozen=True, slots=True)
class Suspension:
    """Automation paused on a target (or on every target: `ALL_TARGETS`): `serve` still
    plans and reports drift there, and applies nothing, until `reconciler resume`."""

    target: str
    by: str
    since: float
    reason: str = ""

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        why = f": {self.reason}" if self.reason else ""
        return f"suspended by {self.by} since {since}{why}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "by": self.by, "since": self.since, "reason": self.reason}


def suspension_of(suspensions: dict[str, Suspension], target: str) -> Suspension | None:
    """What suspends `target`: its own suspension, or the one of every target."""
    return suspensions.get(target) or suspensions.get(ALL_TARGETS)


@dataclass(frozen=True, slots=True)
class StateIdentity:
    """Which state this is (as Terraform's lineage): made once, kept by `state migrate`.
    `key` signs saved plans (HMAC), so that a plan file edited after it was written, or
    made against another state, is refused; whoever can read the state can sign, which
    is who may apply anyway."""

    lineage: str
    key: bytes = field(repr=False)


class StateStore(Protocol):
    """One interface for every backend. Methods are synchronous: each is one short
    transaction on a local or nearby database, and the executor calls them between
    platform calls, never during one."""

    location: str
    """Where the state lives, fit to print (no password)."""

    @property
    def schema_version(self) -> int: ...

    def inventory(self, target: str | None = None) -> dict[str, InventoryEntry]: ...

    def inventory_targets(self) -> set[str]:
        """The targets the inventory holds resources of (without reading the entries)."""
        ...

    def record_applied(self, entry: InventoryEntry) -> None:
        """Add or update an entry; an adopted resource stays marked adopted."""
        ...

    def forget(self, resource: str) -> None: ...

    def begin_run(
        self,
        command: str,
        *,
        revision: str | None,
        profile: str | None,
        plan: dict[str, Any] | None,
        targets: tuple[str, ...] = (),
    ) -> int: ...

    def finish_run(self, run_id: int, result: RunResult, actions: list[dict[str, Any]]) -> None: ...

    def runs(self, limit: int = 20, target: str | None = None) -> list[RunRecord]: ...

    def open_intent(
        self,
        run_id: int,
        resource: str,
        action: str,
        call: str,
        entry: InventoryEntry | None = None,
    ) -> int: ...

    def close_intent(
        self,
        intent_id: int,
        *,
        outcome: Closing,
        error: str | None = None,
        record: InventoryEntry | None = None,
    ) -> None:
        """Close an intent; with `record`, write that inventory entry in the same
        transaction, so no kill can leave a finished create out of the inventory."""
        ...

    def pending_intents(self) -> list[Intent]:
        """The intents whose outcome nobody knows yet: `pending` (a killed run's, or in
        flight) and `unknown` (an answer lost), oldest first."""
        ...

    def abandon(self, targets: tuple[str, ...]) -> int:
        """Close the `pending` intents on `targets` as abandoned and mark the runs still
        `running` there interrupted; the caller holds those targets' locks, so whoever
        left them is gone. The number of intents closed. (`unknown` ones are settled by
        the caller with `close_intent`, once it has looked at the target.)"""
        ...

    # --- locks: one apply per target -------------------------------------------------

    def acquire_lock(self, holder: LockHolder, *, stale_before: float) -> LockHolder:
        """Take `holder.target`'s lock if it is free, already ours, or its holder's last
        heartbeat is older than `stale_before`; the holder after the attempt."""
        ...

    def take_over_lock(self, holder: LockHolder, *, from_token: str) -> LockHolder:
        """Take the lock from the holder with `from_token` (known to be dead)."""
        ...

    def heartbeat(self, token: str, now: float) -> int:
        """Refresh every lock held with `token`; how many it still holds."""
        ...

    def release_lock(self, target: str, token: str) -> None: ...

    def break_lock(self, target: str) -> LockHolder | None:
        """Remove the lock whoever holds it (`reconciler unlock`); who held it."""
        ...

    def locks(self) -> dict[str, LockHolder]: ...

    def identity(self) -> StateIdentity:
        """This state's lineage and plan-signing key, made on first use."""
        ...

    # --- suspensions: automation paused per target ---------------------------------

    def suspend(self, suspension: Suspension) -> None:
        """Record (or replace) the suspension of `suspension.target`."""
        ...

    def resume(self, target: str) -> Suspension | None:
        """Lift `target`'s suspension; the one lifted, if any."""
        ...

    def suspensions(self) -> dict[str, Suspension]: ...

    def ping(self) -> bool:
        """Whether the store still answers (a store kept open between runs is asked
        before it is used again)."""
        ...

    def close(self) -> None: ...
