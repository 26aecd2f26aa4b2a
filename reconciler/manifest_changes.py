"""Layer 2: what a change to the manifests changes in the desired state, per resource.

Rule: pure functions over snapshots (`reconciler.manifests.snapshot`); no I/O. `plan
--base REF` puts this beside the live plan: the live plan says what applying would do to
the platforms now, this says what the pull request itself changes, which stays true
whatever drift the platforms have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.diff import Change, diff
from reconciler.manifests import ResourceId

Kind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class ResourceChange:
    id: ResourceId
    change: Kind
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "change": self.change,
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True)
class Review:
    """The desired-state difference between a base revision and the head."""

    base_ref: str
    base_revision: str | None
    head_revision: str | None
    resources: tuple[ResourceChange, ...]
    base_error: str | None = None
    """Why the base could not be loaded (then `resources` is empty)."""

    def counts(self) -> dict[str, int]:
        counts = {"added": 0, "changed": 0, "removed": 0}
        for item in self.resources:
            counts[item.change] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.base_ref,
            "revision": self.base_revision,
            "head_revision": self.head_revision,
            "error": self.base_error,
            "summary": self.counts(),
            "resources": [r.to_json() for r in self.resources],
        }


def compare(
    base: Mapping[ResourceId, Mapping[str, Any]],
    head: Mapping[ResourceId, Mapping[str, Any]],
    *,
    base_ref: str,
    base_revision: str | None,
    head_revision: str | None,
) -> Review:
    """Resources added, removed or changed from `base` to `head`, sorted by id."""
    found: list[ResourceChange] = []
    for rid in sorted(set(base) | set(head), key=str):
        old, new = base.get(rid), head.get(rid)
        if old is None and new is not None:
            found.append(ResourceChange(rid, "added", _added(new)))
        elif new is None and old is not None:
            found.append(ResourceChange(rid, "removed", ()))  # its manifest says it all
        elif old is not None and new is not None:
            changes = tuple(diff(dict(new), dict(old)))
            if changes:
                found.append(ResourceChange(rid, "changed", changes))
    return Review(base_ref, base_revision, head_revision, tuple(found))


def failed(base_ref: str, base_revision: str | None, error: str) -> Review:
    """A review whose base does not load: the head's plan still stands on its own."""
    return Review(base_ref, base_revision, None, (), error)


def _added(data: Mapping[str, Any]) -> tuple[Change, ...]:
    # Field by field under each section, as a plan shows a create.
    empty: dict[str, Any] = {k: {} for k, value in data.items() if isinstance(value, dict)}
    return tuple(diff(dict(data), empty))
