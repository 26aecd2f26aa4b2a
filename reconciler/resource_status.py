"""Layer 2: sync and health of each resource, the one model `status`, `/status`, the web
UI and the metrics show. Pure: a plan and what it was made from in, statuses out.

Rule: imports `reconciler.manifests`, `reconciler.diff`, `reconciler.graph`,
`reconciler.plan` and `reconciler.providers.base` only.

* **sync** compares the manifests with the target: `synced` (nothing to do), `out_of_sync`
  (the plan patches, bounces, replaces, deletes or adopts it: its action and what the
  action restarts are given), `missing` (in the manifests, not on the target), or
  `not_managed` (on the target, in neither the manifests nor the inventory).
* **health** is what the platform says (`providers.base.Health`): a pipeline's state and
  reason, a deployment's status; kinds with no state of their own are healthy when
  present; a missing resource's health is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.diff import Change, path_of
from reconciler.graph import Graph
from reconciler.manifests import ResourceId
from reconciler.plan import Action, Plan
from reconciler.providers.base import ActionName, Applied, Health, Observation

Sync = Literal["synced", "out_of_sync", "missing", "not_managed"]
SYNCS: tuple[Sync, ...] = ("synced", "out_of_sync", "missing", "not_managed")

MISSING = Health("unknown", "not on the target")


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    id: ResourceId
    sync: Sync
    health: Health
    action: ActionName | None = None
    """What the plan does to it; None when in sync or not managed."""
    cost: str = ""
    """What the action restarts, in words ("" for nothing)."""
    reasons: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    uses: tuple[ResourceId, ...] = ()
    """Its dependencies: from the manifests, or as the platform shows them."""
    used_by: tuple[ResourceId, ...] = ()
    managed: bool = True
    """In the manifests, or owned (the inventory)."""
    platform_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "target": self.id.target,
            "kind": self.id.kind,
            "name": self.id.name,
            "sync": self.sync,
            "health": self.health.state,
            "health_reason": self.health.reason,
            "action": self.action,
            "restarts": self.cost,
            "reasons": list(self.reasons),
            "changes": [c.to_json() for c in self.changes],
            "uses": [str(r) for r in self.uses],
            "used_by": [str(r) for r in self.used_by],
            "managed": self.managed,
            "platform_status": self.platform_status,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ResourceStatus:
        """A status read back from `to_json` (published by another replica)."""

        def rid(text: str) -> ResourceId:
            parsed = ResourceId.parse(text)
            if parsed is None:
                raise ValueError(f"'{text}' is not a resource id")
            return parsed

        return ResourceStatus(
            rid(data["id"]),
            data["sync"],
            Health(data["health"], data["health_reason"]),
            action=data["action"],
            cost=data["restarts"],
            reasons=tuple(data["reasons"]),
            changes=tuple(
                Change(path_of(c["path"]), c["op"], c["old"], c["new"]) for c in data["changes"]
            ),
            uses=tuple(rid(r) for r in data["uses"]),
            used_by=tuple(rid(r) for r in data["used_by"]),
            managed=data["managed"],
            platform_status=data["platform_status"],
        )


def cost(action: Action) -> str:
    """What applying `action` restarts, as a person reads it."""
    if action.action == "replace":
        return "deleted and created again"
    if action.action == "delete":
        return "deleted"
    parts = []
    if action.restarts:
        parts.append("restarts it")
    if action.bounce is not None:
        parts.append(f"bounces {action.bounce.shown}")
    return "; ".join(parts)


def statuses(
    plan: Plan,
    graph: Graph,
    observations: Mapping[str, Observation],
    inventory: Mapping[ResourceId, Applied],
) -> list[ResourceStatus]:
    """Every resource of the manifests, of the inventory, and of the targets, sorted."""
    actions = {a.id: a for a in plan.actions}
    users: dict[ResourceId, set[ResourceId]] = {}
    uses: dict[ResourceId, tuple[ResourceId, ...]] = {}
    for observation in observations.values():
        for shown in observation.resources.values():
            uses[shown.id] = shown.depends_on
            for used in shown.depends_on:
                users.setdefault(used, set()).add(shown.id)
    for rid in graph.dag.nodes:
        uses[rid] = tuple(graph.dependencies(rid))
        for used in uses[rid]:
            users.setdefault(used, set()).add(rid)
    seen = {
        rid: observed
        for observation in observations.values()
        for rid, observed in observation.resources.items()
    }
    every = set(graph.dag.nodes) | set(inventory) | set(seen)
    found = []
    for rid in sorted(every, key=str):
        action = actions.get(rid)
        observed = seen.get(rid)
        managed = rid in graph.dag.nodes or rid in inventory
        if observed is None:
            if rid not in graph.dag.nodes:
                continue  # owned, gone from manifests and target: forgotten by the plan
            sync: Sync = "missing"
        elif not managed:
            sync = "not_managed"
        elif (action is not None and (action.mutates or action.adopt)) or (
            rid not in graph.dag.nodes
        ):
            sync = "out_of_sync"
        else:
            sync = "synced"
        planned = action if action is not None and (action.mutates or action.adopt) else None
        reasons = planned.reasons if planned is not None else ()
        if sync == "out_of_sync" and planned is None:
            reasons = ("owned by reconciler and no longer in the manifests; not pruned",)
        found.append(
            ResourceStatus(
                rid,
                sync,
                observed.health if observed is not None else MISSING,
                action=planned.action if planned is not None else None,
                cost=cost(planned) if planned is not None else "",
                reasons=reasons,
                changes=planned.changes if planned is not None else (),
                uses=tuple(sorted(uses.get(rid, ()), key=str)),
                used_by=tuple(sorted(users.get(rid, ()), key=str)),
                managed=managed,
                platform_status=observed.status if observed is not None else None,
            )
        )
    return found


def counts(found: Iterable[ResourceStatus]) -> dict[str, dict[str, int]]:
    """Per target, how many resources are in each sync and each health state (managed
    resources only: what is not managed is counted apart)."""
    result: dict[str, Counter[str]] = {}
    for status in found:
        counter = result.setdefault(status.id.target, Counter())
        counter[f"sync:{status.sync}"] += 1
        if status.managed:
            counter[f"health:{status.health.state}"] += 1
    return {target: dict(counter) for target, counter in sorted(result.items())}
