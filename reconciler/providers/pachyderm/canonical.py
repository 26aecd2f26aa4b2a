"""One canonical form for a spec, whichever side it comes from.

A manifest (camelCase or snake_case, ints, defaults left out) and pachd's answer
(`effectiveSpecJson`: camelCase or proto names, int64 as strings, zero values emitted or
not, defaults filled in) must become equal when they mean the same, or every plan shows
noise and restarts a pipeline for nothing. Both sides go through `canonical` and then
`with_defaults` (the server defaults of NOTES.md), which are idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

DEFAULT_PROJECT = "default"
DEFAULT_IMAGE = "ubuntu:20.04"

INT64_FIELDS = frozenset(
    {
        "acceptReturnCode",
        "commits",
        "constant",
        "datumTries",
        "externalPort",
        "internalPort",
        "number",
        "perWorker",
        "sizeBytes",
        "tolerationSeconds",
    }
)
USER_MAPS = frozenset({"annotations", "env", "labels", "nodeSelector"})
"""Mappings whose keys are the user's (environment variables, labels): kept verbatim."""

_INTEGER = re.compile(r"-?[0-9]+\Z")


def camel(key: str) -> str:
    """`datum_tries` -> `datumTries`; keys without '_' (`URL`, `datumTries`) unchanged."""
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def canonical(value: Any, field: str = "") -> Any:
    """camelCase keys, int64 strings as ints, and no zero values (proto3: unset == zero),
    empty messages kept (they have presence)."""
    # Exact type tests first: every spec holds tens of values, every plan 10,000 specs,
    # and an isinstance against the Mapping ABC costs several times more.
    kind = type(value)
    if kind is dict or (kind is not str and isinstance(value, Mapping)):
        if field in USER_MAPS:
            return {str(k): canonical(v) for k, v in value.items()} or None
        result = {}
        for key, item in value.items():
            name = camel(key if type(key) is str else str(key))
            shown = canonical(item, name)
            if not _empty(shown):
                result[name] = shown
        return result
    if kind is list or kind is tuple:
        return [canonical(item, field) for item in value]
    if kind is str and field in INT64_FIELDS and _INTEGER.match(value):
        return int(value)
    if kind is float and value.is_integer():
        return int(value)  # `cpu: 1` read into a float field is pachd's 1
    return value


def _empty(value: Any) -> bool:
    if value is None or value is False:
        return True
    kind = type(value)
    # An empty message has presence (`"spout": {}` makes a spout pipeline; protojson
    # keeps it): only maps, which `canonical` turns to None when empty, and lists and
    # strings are unset when empty.
    if kind is str or kind is list:
        return not value
    if kind is int or kind is float:
        return bool(value == 0)
    return False


def with_defaults(spec: Mapping[str, Any], project: str, name: str) -> dict[str, Any]:
    """A canonical pipeline spec with what pachd fills in when the spec leaves it out."""
    result = dict(spec)
    if isinstance(result.get("transform"), Mapping):
        result["transform"] = {"image": DEFAULT_IMAGE, **result["transform"]}
    result.setdefault("outputBranch", "master")
    result.setdefault("datumTries", 3)
    result.setdefault("reprocessSpec", "until_success")
    if isinstance(result.get("service"), Mapping):
        result["service"] = {"type": "NodePort", **result["service"]}
    if isinstance(result.get("input"), Mapping):
        result["input"] = _input_defaults(result["input"], project, name)
    return result


def _input_defaults(node: Mapping[str, Any], project: str, pipeline: str) -> dict[str, Any]:
    result = dict(node)
    pfs = result.get("pfs")
    if isinstance(pfs, Mapping):
        result["pfs"] = {
            "branch": "master",
            "name": pfs.get("repo"),
            "repoType": "user",
            "project": project,
            **pfs,
        }
    cron = result.get("cron")
    if isinstance(cron, Mapping):
        result["cron"] = {"repo": f"{pipeline}_{cron.get('name')}", "project": project, **cron}
    for key in ("join", "group", "cross", "union"):
        children = result.get(key)
        if isinstance(children, list):
            result[key] = [
                _input_defaults(child, project, pipeline) if isinstance(child, Mapping) else child
                for child in children
            ]
    return result


def input_nodes(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every node of a pipeline's input tree, the root first."""
    stack = [spec.get("input")]
    while stack:
        node = stack.pop(0)
        if not isinstance(node, Mapping):
            continue
        yield node
        for key in ("join", "group", "cross", "union"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend(children)


def input_repos(spec: Mapping[str, Any], project: str) -> list[tuple[str, str]]:
    """(project, repo) of every pfs input, at any depth."""
    return [
        (str(node["pfs"].get("project") or project), str(node["pfs"]["repo"]))
        for node in input_nodes(spec)
        if isinstance(node.get("pfs"), Mapping) and node["pfs"].get("repo")
    ]


def cron_repos(spec: Mapping[str, Any], pipeline: str) -> list[str]:
    """The repos pachd makes for a pipeline's cron inputs."""
    return [
        str(node["cron"].get("repo") or f"{pipeline}_{node['cron'].get('name')}")
        for node in input_nodes(spec)
        if isinstance(node.get("cron"), Mapping)
    ]


def secret_names(spec: Mapping[str, Any]) -> list[str]:
    """Every Kubernetes secret a pipeline mounts, pulls images with, or egresses with."""
    # The spec may be pachd's (observed): any field may hold anything, so each is looked
    # at only when it has the shape a pipeline spec gives it.
    transform = _field(spec, "transform")
    names = [str(m["name"]) for m in _items(transform, "secrets") if _field(m, "name", str)]
    pulls = transform.get("imagePullSecrets")
    names += [str(n) for n in pulls if isinstance(n, str) and n] if isinstance(pulls, list) else []
    egress = _field(_field(_field(spec, "egress"), "sqlDatabase"), "secret")
    if _field(egress, "name", str):
        names.append(str(egress["name"]))
    return list(dict.fromkeys(names))


def _field(node: Mapping[str, Any], key: str, kind: type = dict) -> Any:
    """`node[key]` when it is a `kind` (an object by default); else an empty one."""
    value = node.get(key)
    return value if isinstance(value, kind) else kind()


def _items(node: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The objects in the list `node[key]` (none when it is no list)."""
    value = node.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
