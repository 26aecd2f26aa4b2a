"""The state store's records and interface, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

IntentOutcome = Literal["pending", "ok", "failed"]
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


@dataclass(frozen=True, slots=True)
class Intent:
    """A mutating call: written before it is sent, closed when it answers."""

    id: int
    run_id: int
    resource: str
    action: str
    call: str
    started_at: float
    outcome: IntentOutcome
    finished_at: float | None = None
    error: str | None = None


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


class StateStore(Protocol):
    """One interface for every backend. Methods are synchronous: each is one short
    transaction on a local or nearby database, and the executor calls them between
    platform calls, never during one."""

    def inventory(self, target: str | None = None) -> dict[str, InventoryEntry]: ...

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
    ) -> int: ...

    def finish_run(self, run_id: int, result: RunResult, actions: list[dict[str, Any]]) -> None: ...

    def runs(self, limit: int = 20) -> list[RunRecord]: ...

    def open_intent(self, run_id: int, resource: str, action: str, call: str) -> int: ...

    def close_intent(self, intent_id: int, *, ok: bool, error: str | None = None) -> None: ...

    def pending_intents(self) -> list[Intent]: ...

    def close(self) -> None: ...
