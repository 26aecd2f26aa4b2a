"""The desired state as plain data, for comparing two revisions of a manifests repository.

Each resource becomes its manifest's metadata and spec, with references kept as written
(`${env:NAME}`: a revision's diff shows which variable changed, never a value, and loads
without the secrets), the literal values of a kind's sensitive fields (a Secret's data)
kept `Sensitive` (compared by digest, shown as `(sensitive)`), and a resource's content
(a Package's folder or artifact) under `files`, each file by digest, so a change to a q
file inside a package shows as that file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from reconciler.manifests.loader import Manifests
from reconciler.manifests.resources import Resource, ResourceId
from reconciler.manifests.values import Sensitive


def snapshot(manifests: Manifests) -> dict[ResourceId, dict[str, Any]]:
    return {resource.id: _resource(resource, manifests) for resource in manifests.resources}


def _resource(resource: Resource, manifests: Manifests) -> dict[str, Any]:
    data = resource.to_data()
    spec = _plain(data["spec"])
    info = manifests.catalog.kinds.get((resource.api_version, resource.kind))
    for name in info.sensitive if info is not None else ():
        if isinstance(spec.get(name), dict):
            spec[name] = {
                key: item if _is_reference(item) else Sensitive("literal", str(item))
                for key, item in spec[name].items()
            }
    # The name (and project) are the resource's id: a rename is a remove and an add.
    metadata = {k: v for k, v in _plain(data["metadata"]).items() if k not in ("name", "project")}
    result: dict[str, Any] = {"metadata": metadata, "spec": spec}
    content = manifests.content.get(resource.id)
    if content is not None:
        result["files"] = {name: _digest(path) for name, path in content.files}
    return result


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _is_reference(item: Any) -> bool:
    return isinstance(item, str) and item.startswith("${") and item.endswith("}")


def _plain(value: Any) -> Any:
    if isinstance(value, Sensitive):
        return value.expression  # the reference as written: never a value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
