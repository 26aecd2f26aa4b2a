"""Layer 2: what differs between a desired and an observed spec. Pure.

Rule: imports only `reconciler.errors`, `reconciler.manifests` and libraries; deepdiff is
used here and nowhere else, and never leaks out: callers get the project's own immutable
`Change(path, op, old, new)` values (kopf's `DiffItem`), sorted by path. A path is a
tuple of keys and list indices; `dotted` writes it as text (`spec.transform.cmd[0]`) for
people and for the plan's JSON, and nothing else reads paths as text.

Before comparing, both sides are made canonical: paths the provider ignores are dropped,
lists the provider says are unordered are sorted (so `[a, b]` and `[b, a]` are equal),
and sensitive values are replaced by their digests, so a changed secret shows as a
change whose old and new are both `(sensitive)` and no clear value ever enters a Change.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from reconciler.manifests.resources import PathKey, dotted
from reconciler.manifests.values import REDACTED, Sensitive

Op = Literal["add", "remove", "change"]
__all__ = [
    "Change",
    "DiffRules",
    "PathKey",
    "by_path",
    "diff",
    "digest",
    "dotted",
    "equal",
    "path_of",
]
Pattern = tuple[str, ...]
"""A path pattern: each part is a key, `*` (any key or index), or a glob of keys."""

_SENSITIVE_PREFIX = "\x00sensitive:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: at `path`, `old` (observed) became `new` (desired)."""

    path: PathKey
    op: Op
    old: Any = None
    new: Any = None

    @property
    def text(self) -> str:
        return dotted(self.path)

    def under(self, field: PathKey) -> bool:
        """Whether the change is at `field` or inside it."""
        return self.path[: len(field)] == field

    def to_json(self) -> dict[str, Any]:
        return {"path": dotted(self.path), "op": self.op, "old": self.old, "new": self.new}


_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def path_of(text: str) -> PathKey:
    """`dotted` read back, for a path written as text in a rule (`"spec.transform"`):
    exact for keys without dots and brackets, as the fields of specs are."""
    return tuple(int(index) if index else key for index, key in _PART.findall(text) if index or key)


def by_path(changes: Iterable[Change]) -> list[Change]:
    """Changes in the order people read them: by path as text, then by operation."""
    return sorted(changes, key=lambda c: (dotted(c.path), c.op))


@dataclass(frozen=True, slots=True)
class DiffRules:
    """What a provider tells the diff about one kind."""

    unordered: Sequence[Pattern] = ()
    """Lists whose order does not matter."""
    ignored: Sequence[Pattern] = ()
    """Paths never compared (server-managed, or compared some other way)."""

    def __post_init__(self) -> None:
        # Tuples throughout, so that rules are hashable and compiled once (`_compiled`).
        for name in ("unordered", "ignored"):
            patterns = getattr(self, name)
            object.__setattr__(self, name, tuple(tuple(pattern) for pattern in patterns))


def diff(
    desired: Any, observed: Any, rules: DiffRules = DiffRules(), prefix: PathKey = ()
) -> list[Change]:
    """The changes that turn `observed` into `desired`, sorted by path."""
    if _same(desired, observed, rules):
        return []
    right, left = _both(desired, observed, rules)
    if left == right:
        return []
    # Imported here: most comparisons are equal, and a no-op plan never needs deepdiff.
    from deepdiff import DeepDiff

    # threshold 0: always report key by key, never "the whole mapping changed".
    result = DeepDiff(left, right, view="tree", verbose_level=2, threshold_to_diff_deeper=0)
    changes: list[Change] = []
    for report, items in result.items():
        op = _op(report)
        for item in items:
            path: PathKey = (*prefix, *item.path(output_format="list"))
            old = None if op == "add" else _shown(item.t1)
            new = None if op == "remove" else _shown(item.t2)
            changes.append(Change(path, op, old, new))
    return by_path(changes)


def equal(desired: Any, observed: Any, rules: DiffRules = DiffRules()) -> bool:
    if _same(desired, observed, rules):
        return True
    right, left = _both(desired, observed, rules)
    return bool(right == left)


def _same(desired: Any, observed: Any, rules: DiffRules) -> bool:
    """Equal once the rules are applied, found without copying what no rule reaches.

    Most comparisons in a plan are of equal specs, so this cheap test comes first. It
    never finds equal what the full comparison (`_both`) would not: where the desired
    side holds a sensitive value the observed side, plain data, is never equal to it,
    and everything else `_both` does on top is the same for both sides.
    """
    rules_at = (_compiled(rules),)
    return bool(_ruled(desired, rules_at) == _ruled(observed, rules_at))


def _both(desired: Any, observed: Any, rules: DiffRules) -> tuple[Any, Any]:
    """Both sides canonical. Where the desired side holds a sensitive value, the platform
    shows the clear text back (a pipeline's env); it is compared by its digest too, so
    it never enters a Change."""
    sensitive: set[PathKey] = set()
    rules_at = (_compiled(rules),)
    right = _canonical(desired, rules_at, (), found=sensitive)
    left = _canonical(observed, rules_at, (), hashed=sensitive)
    return right, left


def _op(report: str) -> Op:
    if report.endswith("_added"):
        return "add"
    if report.endswith("_removed"):
        return "remove"
    return "change"


@dataclass(slots=True)
class _Rule:
    """The rules' patterns as a tree: one node per pattern prefix."""

    exact: dict[str, _Rule] = field(default_factory=dict)
    globs: list[tuple[str, _Rule]] = field(default_factory=list)
    """`*` (any key or index) and globs of keys."""
    ignored: bool = False
    unordered: bool = False

    def child(self, part: str) -> _Rule:
        if not any(c in part for c in "*?["):
            return self.exact.setdefault(part, _Rule())
        for glob, node in self.globs:
            if glob == part:
                return node
        node = _Rule()
        self.globs.append((part, node))
        return node


@functools.lru_cache(maxsize=64)
def _compiled(rules: DiffRules) -> _Rule:
    root = _Rule()
    for patterns, ignored in ((rules.ignored, True), (rules.unordered, False)):
        for pattern in patterns:
            node = root
            for part in pattern:
                node = node.child(part)
            if ignored:
                node.ignored = True
            else:
                node.unordered = True
    return root


def _step(rules_at: tuple[_Rule, ...], key: str | int) -> tuple[_Rule, ...]:
    """The rule nodes that reach one level deeper, under `key`."""
    found: list[_Rule] = []
    for node in rules_at:
        if isinstance(key, str):
            exact = node.exact.get(key)
            if exact is not None:
                found.append(exact)
        for glob, child in node.globs:
            if glob == "*" or (isinstance(key, str) and fnmatchcase(key, glob)):
                found.append(child)
    return tuple(found)


def _ruled(value: Any, rules_at: tuple[_Rule, ...]) -> Any:
    """`value` with the rules applied where they reach; the rest shared, not copied."""
    if not rules_at:
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            below = _step(rules_at, key)
            if not any(node.ignored for node in below):
                result[key] = _ruled(item, below)
        return result
    if isinstance(value, list | tuple):
        items = [_ruled(item, _step(rules_at, index)) for index, item in enumerate(value)]
        if any(node.unordered for node in rules_at):
            items.sort(key=_sort_key)
        return items
    return value


def _sort_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _canonical(
    value: Any,
    rules_at: tuple[_Rule, ...],
    path: PathKey,
    *,
    found: set[PathKey] | None = None,
    hashed: set[PathKey] | frozenset[PathKey] = frozenset(),
) -> Any:
    if isinstance(value, Sensitive):
        if found is not None:
            found.add(path)
        return _SENSITIVE_PREFIX + value.digest
    if isinstance(value, str) and path in hashed:
        if _DIGEST.fullmatch(value):
            # Already a digest: the spec as last applied keeps sensitive values so.
            return _SENSITIVE_PREFIX + value
        return _SENSITIVE_PREFIX + "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            below = _step(rules_at, key) if rules_at else ()
            if not any(node.ignored for node in below):
                result[key] = _canonical(item, below, (*path, key), found=found, hashed=hashed)
        return result
    if isinstance(value, list | tuple):
        items = [
            _canonical(
                item,
                _step(rules_at, index) if rules_at else (),
                (*path, index),
                found=found,
                hashed=hashed,
            )
            for index, item in enumerate(value)
        ]
        if any(node.unordered for node in rules_at):
            items.sort(key=_sort_key)
        return items
    return value


def _shown(value: Any) -> Any:
    """A value as a Change holds it: digests of sensitive values become `(sensitive)`."""
    if isinstance(value, str) and value.startswith(_SENSITIVE_PREFIX):
        return REDACTED
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def digest(value: Any) -> str:
    """A stable digest of a spec: key order never matters; a sensitive value counts by its
    own digest, so the result may be stored and shown without revealing anything."""
    # The same text as dumping `_canonical(value)`, in one pass: json calls `_marked` for
    # what it cannot write itself (a Sensitive becomes its marked digest).
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_marked)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _marked(value: Any) -> Any:
    if isinstance(value, Sensitive):
        return _SENSITIVE_PREFIX + value.digest
    return str(value)


def sealed(value: Any) -> Any:
    """`value` with every sensitive value replaced by its digest: safe to store."""
    return _shown_digests(_canonical(value, (), ()))


def _shown_digests(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_SENSITIVE_PREFIX):
        return value.removeprefix(_SENSITIVE_PREFIX)
    if isinstance(value, dict):
        return {key: _shown_digests(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown_digests(item) for item in value]
    return value
