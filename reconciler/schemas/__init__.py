"""Layer 0: data, not code: the platforms' own JSON Schemas and the Insights API contract, shipped
with the package.

Rule: no imports of `reconciler`; any layer may read these files. Validation of
manifests (layer 1), the providers (layer 3) and the sandbox (layer 8) read the same copy,
so the Insights client and its emulator cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ruamel.yaml import YAML

HERE = Path(__file__).parent
CREATE_PIPELINE_REQUEST = "pachyderm/pps_v2.CreatePipelineRequest.schema.json"
PACKAGE_MANAGER = "insights/package-manager-v2.openapi.yaml"
"""The kdb Insights Package Manager v2 API as reconciler assumes it (see the file)."""
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@cache
def load(relative: str) -> Any:
    """The parsed file at `relative`: JSON, or YAML for `.yaml` files."""
    text = (HERE / relative).read_text(encoding="utf-8")
    if relative.endswith((".yaml", ".yml")):
        return YAML(typ="safe", pure=False).load(text)  # the C parser where installed
    return json.loads(text)


def text(relative: str) -> str:
    return (HERE / relative).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of an OpenAPI description: how to call it."""

    id: str
    method: str
    """Upper case: GET, POST, ..."""
    path: str
    """With `{parameters}`, e.g. `/packagemanager/v2/deployments/{id}`."""
    mutates: bool = True
    """False for GET and for operations marked `x-read-only`."""

    def url(self, **params: str) -> str:
        return self.path.format(**{key: quote(value, safe="") for key, value in params.items()})


def operations(description: Any) -> dict[str, Operation]:
    """Every operation of a parsed OpenAPI description, by operationId (or, without one,
    by `METHOD path`)."""
    found: dict[str, Operation] = {}
    for path, item in (description.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                key = str(operation.get("operationId") or f"{method.upper()} {path}")
                mutates = method != "get" and not operation.get("x-read-only")
                found[key] = Operation(key, method.upper(), str(path), mutates)
    return found


@cache
def package_manager() -> dict[str, Operation]:
    """The Insights operations reconciler uses, by operationId."""
    return operations(load(PACKAGE_MANAGER))
