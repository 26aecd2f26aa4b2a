"""A legacy kxi-controller assembly turned into a package folder, locally.

KX's client converts assemblies on the server (`migrations.convert`); this does the same
mapping where no server is at hand, and says what it could not map. An assembly
(KX, "Database configuration": `name`, `labels`, `tables`, `mounts`, `bus`, `elements`;
or the same under `spec` of an `Assembly` resource) becomes a package of that name:

- each table schema: `tables/<table>.yaml`;
- the database the assembly describes: `databases/<name>/shards/<name>-shard.yaml`,
  holding its labels, mounts, storage manager (`elements.sm`) and data access processes
  (`elements.dap`, as `daps`);
- each stream processor pipeline (`elements.sp.pipelines`): `pipelines/<pipeline>.yaml`;
- `manifest.yaml` naming them all, as a package folder's manifest does.

The message bus and any other element have no place a package documents: they are
listed as not mapped, for the user to carry over by hand.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reconciler.errors import BadValue
from reconciler.providers.insights.kinds import InsightsName

_NAME: TypeAdapter[str] = TypeAdapter(InsightsName)
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")
"""A table's or pipeline's name: it becomes a file name inside the package."""


def _part(section: str, name: object, value: object) -> tuple[str, dict[str, Any]]:
    """A named entry of the assembly, checked: a safe file name and a mapping."""
    text = str(name)
    if not _PART.match(text):
        raise BadValue(
            f"{section} '{text}' cannot name a file of the package",
            "use letters, digits, '_' and '-'",
        )
    if value is None:
        return text, {}
    if not isinstance(value, Mapping):
        raise BadValue(f"{section} '{text}' is not a mapping", "see the assembly's reference")
    return text, dict(value)


NAME_HINT = "a package name is lower case letters, digits and '-', starting with a letter"


@dataclass
class Converted:
    name: str
    files: dict[str, Any] = field(default_factory=dict)
    """Path inside the package folder to the YAML document it holds."""
    unmapped: list[str] = field(default_factory=list)
    """What of the assembly has no place in the package (`bus`, `elements.gw`)."""


def _each(
    package: Converted, manifest: dict[str, Any], what: str, entries: Mapping[Any, Any]
) -> None:
    """Each table (or pipeline) to a file of its own, named in the manifest."""
    for raw, value in entries.items():
        name, fields = _part(what, raw, value)
        path = f"{what}s/{name}.yaml"
        package.files[path] = {"name": name, **fields}
        manifest.setdefault(f"{what}s", {})[name] = {"file": path}


def convert(assembly: Any, version: str) -> Converted:
    """The package an assembly becomes; BadValue when it is not an assembly."""
    if not isinstance(assembly, Mapping):
        raise BadValue("is not an assembly: a YAML mapping", "give a kxi-controller assembly")
    body: Mapping[str, Any] = assembly
    if assembly.get("kind") == "Assembly" and isinstance(assembly.get("spec"), Mapping):
        body = {**assembly["spec"], "name": (assembly.get("metadata") or {}).get("name")}
    name = str(body.get("name") or "").strip().lower()
    if not name:
        raise BadValue("names no assembly (no name, nor metadata.name)", NAME_HINT)
    try:
        _NAME.validate_python(name)
    except ValidationError:
        raise BadValue(f"'{name}' cannot name a package", NAME_HINT) from None
    package = Converted(name)
    known = {"name", "description", "labels", "tables", "mounts", "elements"}
    package.unmapped.extend(sorted(str(k) for k in body if k not in known))
    manifest: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "version": version,
        "dependencies": [],
        "metadata": {"description": str(body.get("description") or f"converted from {name}")},
    }
    tables = body.get("tables") or {}
    if not isinstance(tables, Mapping):
        raise BadValue("its tables are not a mapping of name to schema", "see KX's reference")
    _each(package, manifest, "table", tables)
    elements = body.get("elements") or {}
    elements = elements if isinstance(elements, Mapping) else {}
    shard: dict[str, Any] = {"name": f"{name}-shard"}
    for key in ("labels", "mounts"):
        if isinstance(body.get(key), Mapping) and body[key]:
            shard[key] = dict(body[key])
        elif body.get(key):
            package.unmapped.append(key)
    if isinstance(elements.get("sm"), Mapping):
        shard["sm"] = dict(elements["sm"])
    if isinstance(elements.get("dap"), Mapping):
        shard["daps"] = dict(elements["dap"])
    if len(shard) > 1:
        path = f"databases/{name}/shards/{name}-shard.yaml"
        package.files[path] = shard
        manifest["databases"] = {
            name: {"dir": f"databases/{name}", "shards": [f"{name}-shard"], "tables": []}
        }
    sp = elements.get("sp")
    pipelines = sp.get("pipelines") if isinstance(sp, Mapping) else None
    if isinstance(pipelines, Mapping):
        _each(package, manifest, "pipeline", pipelines)
    if isinstance(sp, Mapping):
        package.unmapped.extend(f"elements.sp.{k}" for k in sorted(sp) if k != "pipelines")
    package.unmapped.extend(
        f"elements.{k}" for k in sorted(elements) if k not in ("sm", "dap", "sp")
    )
    package.files["manifest.yaml"] = manifest
    return package
