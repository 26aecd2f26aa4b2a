"""JSON Schemas of every manifest kind and of reconciler.yaml, generated from the models.

`specs/` holds their output (`reconciler schema --out specs`); a test fails when it is
stale. Editors that speak the YAML language server pick a schema up from a first line
`# yaml-language-server: $schema=<path to the schema>`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from reconciler.manifests.catalog import Catalog, KindInfo
from reconciler.manifests.resources import Metadata
from reconciler.manifests.serve_config import ServeConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URL = "https://reconciler.dev/schemas/"


def _model_schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    return schema


def _proto_names(schema: Any) -> Any:
    """Every camelCase property also under its snake_case name, as pachd (protojson) and
    `validate` accept both: an editor must not flag `s3_out` or `parallelism_spec`."""
    if isinstance(schema, list):
        return [_proto_names(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _proto_names(value) for key, value in schema.items()}
    properties = result.get("properties")
    if isinstance(properties, dict):
        twins = {}
        for name, sub in properties.items():
            snake = _CAMEL_HUMP.sub("_", name).lower()
            if snake != name and not name.isupper() and snake not in properties:
                twins[snake] = sub
        result["properties"] = {**properties, **twins}
    return result


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def kind_schema(info: KindInfo) -> dict[str, Any]:
    metadata = _model_schema(Metadata)
    spec = _model_schema(info.spec_model)
    if info.schema_aliases:
        spec = _proto_names(spec)
    defs: dict[str, Any] = {}
    for part in (metadata, spec):
        defs.update(part.pop("$defs", {}))
    if info.scope is None:
        metadata = {
            **metadata,
            "properties": {k: v for k, v in metadata["properties"].items() if k != "project"},
        }
    required = ["apiVersion", "kind", "metadata"] + (["spec"] if info.spec_required else [])
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": BASE_URL + file_name(info),
        "title": f"{info.api_version} {info.kind}",
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "apiVersion": {"const": info.api_version},
            "kind": {"const": info.kind},
            "metadata": metadata,
            "spec": spec,
        },
    }
    if defs:
        schema["$defs"] = dict(sorted(defs.items()))
    return schema


def file_name(info: KindInfo) -> str:
    return f"{info.provider}.{info.kind.lower()}.schema.json"


def all_schemas(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """File name to schema, for every kind of the catalog, any manifest, and
    reconciler.yaml with the catalog's targets."""
    schemas = {file_name(info): kind_schema(info) for info in catalog.kinds.values()}
    schemas["manifest.schema.json"] = {
        "$schema": SCHEMA_DIALECT,
        "$id": BASE_URL + "manifest.schema.json",
        "title": "any reconciler manifest",
        "oneOf": [{"$ref": name} for name in sorted(schemas)],
    }
    config = _model_schema(catalog.config_model)
    schemas["reconciler.schema.json"] = {
        "$schema": SCHEMA_DIALECT,
        "$id": BASE_URL + "reconciler.schema.json",
        "title": "reconciler.yaml",
        **config,
    }
    schemas["serve.schema.json"] = {
        "$schema": SCHEMA_DIALECT,
        "$id": BASE_URL + "serve.schema.json",
        "title": "the serve configuration (reconciler serve --config)",
        **_model_schema(ServeConfig),
    }
    return dict(sorted(schemas.items()))


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
