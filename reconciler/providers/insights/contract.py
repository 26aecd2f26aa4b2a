"""The API contract the provider assumes, compared with an instance's own description.

KX does not publish the Package Manager's REST details; our contract
(`reconciler.schemas.PACKAGE_MANAGER`) is an assumption, and `reconciler doctor` checks it
against what a live instance says of itself. Not by path alone: for every operation the
provider calls, by method and path, the parameters it sends (and any the instance
requires that it does not send), the request body (fields the instance would refuse,
fields it requires that we leave out, types that differ) and the success response
(fields the provider reads that the instance does not return). Each difference names
what it would break. Pure: descriptions in, differences out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import schemas

MAX_DEPTH = 8
"""How deep body schemas are compared (ours nest four levels at most)."""

BREAKS = {
    "listPackages": "observing packages: every plan and apply",
    "createPackage": "registering a pushed package version",
    "validatePackage": "checking a package before it is registered",
    "deletePackage": "deleting a package, and retiring an old version",
    "pushArtifact": "pushing a package's artifact",
    "listDeployments": "observing deployments (every plan and apply) and waiting until they"
    " are Running or torn down",
    "createDeployment": "deploying a package",
    "deleteDeployment": "tearing a deployment, or one of its components, down",
    "patchDeploymentRuntime": "hot-loading a new version",
    "patchGlobalProcRuntime": "hot-loading a new version into global aggregators",
}
"""What each operation the provider calls is for, as a difference reports it."""


@dataclass(frozen=True, slots=True)
class Difference:
    operation: str
    where: str
    """`GET /packagemanager/v2/packages`, then what of it: `request body field name`."""
    problem: str
    breaks: str

    def __str__(self) -> str:
        return f"{self.operation} ({self.where}): {self.problem}; breaks {self.breaks}"


def compare(ours: Any, live: Any, used: Sequence[str]) -> list[Difference]:
    """Every difference between our contract and a live description, for the operations
    in `used`."""
    ours_ops = _operations(ours)
    live_ops = {(op.method, _shape(op.path)): op for op in _operations(live).values()}
    differences: list[Difference] = []
    for name in used:
        mine = ours_ops[name]
        breaks = BREAKS.get(name, name)
        where = f"{mine.method} {mine.path}"
        theirs = live_ops.get((mine.method, _shape(mine.path)))
        if theirs is None:
            differences.append(
                Difference(name, where, "the instance has no such operation", breaks)
            )
            continue
        found = _Found(name, where, breaks, differences)
        _parameters(found, ours, mine, live, theirs)
        _request(found, ours, mine, live, theirs)
        _response(found, ours, mine, live, theirs)
    return differences


@dataclass(frozen=True, slots=True)
class _Op:
    method: str
    path: str
    item: Mapping[str, Any]
    """The path item (its parameters apply to every method)."""
    spec: Mapping[str, Any]


def _operations(description: Any) -> dict[str, _Op]:
    if not isinstance(description, Mapping):
        return {}
    found: dict[str, _Op] = {}
    for path, item in (description.get("paths") or {}).items():
        if not isinstance(item, Mapping):
            continue
        for method in schemas.HTTP_METHODS:
            spec = item.get(method)
            if isinstance(spec, Mapping):
                key = str(spec.get("operationId") or f"{method.upper()} {path}")
                found[key] = _Op(method.upper(), str(path), item, spec)
    return found


def _shape(path: str) -> str:
    """A path as the two descriptions can agree on it: without a `/packagemanager`
    prefix (a service may describe itself from its own root), parameters unnamed."""
    return re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/packagemanager").rstrip("/"))


@dataclass(slots=True)
class _Found:
    operation: str
    where: str
    breaks: str
    into: list[Difference]

    def add(self, what: str, problem: str) -> None:
        self.into.append(Difference(self.operation, f"{self.where} {what}", problem, self.breaks))


def _parameters(found: _Found, ours: Any, mine: _Op, live: Any, theirs: _Op) -> None:
    sent = _params(ours, mine)
    taken = _params(live, theirs)
    for (place, name), _ in sorted(sent.items()):
        if place != "path" and (place, name) not in taken:
            found.add(f"{place} parameter {name}", "the instance does not take it")
    for (place, name), spec in sorted(taken.items()):
        if place != "path" and spec.get("required") and (place, name) not in sent:
            found.add(
                f"{place} parameter {name}",
                "the instance requires it and the provider does not send it",
            )


def _params(description: Any, op: _Op) -> dict[tuple[str, str], Mapping[str, Any]]:
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*(op.item.get("parameters") or ()), *(op.spec.get("parameters") or ())]:
        param = _resolve(description, raw)
        if isinstance(param, Mapping) and "name" in param:
            found[(str(param.get("in") or "query"), str(param["name"]))] = param
    return found


def _request(found: _Found, ours: Any, mine: _Op, live: Any, theirs: _Op) -> None:
    sent = _resolve(ours, mine.spec.get("requestBody"))
    taken = _resolve(live, theirs.spec.get("requestBody"))
    if not isinstance(sent, Mapping):
        if isinstance(taken, Mapping) and taken.get("required"):
            found.add("request body", "the instance requires one and the provider sends none")
        return
    if not isinstance(taken, Mapping):
        found.add("request body", "the instance takes none")
        return
    for media, content in (sent.get("content") or {}).items():
        other = (taken.get("content") or {}).get(media)
        if other is None:
            shown = ", ".join(taken.get("content") or {}) or "nothing"
            found.add("request body", f"the instance takes {shown}, not {media}")
            continue
        for what, problem in _accepts(
            ours, content.get("schema"), live, other.get("schema"), "", 0
        ):
            found.add(f"request body {what}".rstrip(), problem)


def _response(found: _Found, ours: Any, mine: _Op, live: Any, theirs: _Op) -> None:
    read = _success(ours, mine.spec)
    given = _success(live, theirs.spec)
    if read is None:
        return
    if given is None:
        found.add("response", "the instance describes no successful answer with a body")
        return
    for what, problem in _returns(ours, read, live, given, "", 0):
        found.add(f"response {what}".rstrip(), problem)


def _success(description: Any, spec: Mapping[str, Any]) -> Any:
    """The JSON schema of the first 2xx answer that has a JSON body."""
    for code, raw in sorted((spec.get("responses") or {}).items(), key=lambda kv: str(kv[0])):
        if not str(code).startswith("2"):
            continue
        answer = _resolve(description, raw)
        content = (answer or {}).get("content") or {}
        for media, body in content.items():
            if "json" in str(media) and isinstance(body, Mapping) and "schema" in body:
                return body["schema"]
    return None


def _accepts(
    ours: Any, sent: Any, live: Any, taken: Any, path: str, depth: int
) -> Iterator[tuple[str, str]]:
    """Where a body valid under `sent` (what we send) would be refused under `taken`."""
    return _walk(ours, sent, live, taken, path, depth, sending=True)


def _returns(
    ours: Any, read: Any, live: Any, given: Any, path: str, depth: int
) -> Iterator[tuple[str, str]]:
    """Where an answer valid under `given` lacks what the provider reads under `read`."""
    return _walk(ours, read, live, given, path, depth, sending=False)


def _walk(
    ours: Any, mine: Any, live: Any, theirs: Any, path: str, depth: int, *, sending: bool
) -> Iterator[tuple[str, str]]:
    """Both schemas side by side, field by field: what we send that the instance would
    refuse or lacks, or what we read that the instance does not give."""
    mine, theirs = _resolve(ours, mine), _resolve(live, theirs)
    if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping) or depth > MAX_DEPTH:
        return
    mismatch = _type_mismatch(mine, theirs)
    if mismatch:
        yield _field(path), f"is {mismatch[1]} there, {mismatch[0]} here"
        return
    ours_fields = mine.get("properties") or {}
    their_fields = theirs.get("properties") or {}
    closed = theirs.get("additionalProperties") is False
    # A request field the instance does not list is refused only where it says so; an
    # answer field it does not list is missing unless it describes no fields at all.
    absent_breaks = closed if sending else (bool(their_fields) or closed)
    absent = "the instance does not accept it" if sending else "the instance does not return it"
    for name in sorted(ours_fields):
        if name in their_fields:
            yield from _walk(
                ours,
                ours_fields[name],
                live,
                their_fields[name],
                _join(path, name),
                depth + 1,
                sending=sending,
            )
        elif absent_breaks:
            yield _field(_join(path, name)), absent
    if sending:
        for name in sorted(set(theirs.get("required") or ()) - set(ours_fields)):
            yield (
                _field(_join(path, name)),
                "the instance requires it and the provider does not send it",
            )
    if "items" in mine and "items" in theirs:
        yield from _walk(
            ours, mine["items"], live, theirs["items"], path + "[]", depth + 1, sending=sending
        )


def _type_mismatch(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[str, str] | None:
    mine, other = ours.get("type"), theirs.get("type")
    if isinstance(mine, str) and isinstance(other, str) and mine != other:
        if {mine, other} == {"integer", "number"}:
            return None
        return mine, other
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field(path: str) -> str:
    return f"field {path}" if path else ""


def _resolve(description: Any, value: Any, seen: int = 0) -> Any:
    """`value` with a local `$ref` followed (`#/components/...`), a few levels deep."""
    while isinstance(value, Mapping) and isinstance(value.get("$ref"), str) and seen < 16:
        ref = str(value["$ref"])
        if not ref.startswith("#/"):
            return None  # a remote reference: nothing to compare with
        node: Any = description
        for part in ref[2:].split("/"):
            node = (
                node.get(part.replace("~1", "/").replace("~0", "~"))
                if isinstance(node, Mapping)
                else None
            )
        value, seen = node, seen + 1
    return value
