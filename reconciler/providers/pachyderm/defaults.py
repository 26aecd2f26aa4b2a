"""Pipeline defaults as pachd merges them into the spec that runs.

pachd stores two specs per pipeline (`src/server/pps/server/api_server.go`,
`CreatePipelineInTransaction`): `userSpecJson`, the request exactly as sent, and
`effectiveSpecJson`, an RFC 7396 merge of, in order, the built-in defaults, the cluster
defaults, the project defaults and the user's spec (`src/server/pps/server/defaults.go`,
`makeEffectiveSpec` and `mergePatch`). Both sides are first rewritten to the protobuf
JSON names (`makeMessageCanonicalizer`: `datum_tries` and `datumTries` are one field).

Every install from 2.8 on has cluster defaults, synthesised at upgrade
(`src/internal/clusterstate/v2.8.0/defaults.go`, `defaultsFromEnv`): resource and sidecar
requests of 1 CPU, 256Mi memory and 1Gi disk. A manifest compared with
`effectiveSpecJson` as it is would differ on every pipeline of every real cluster. So
the provider compares like with like: the manifest and the pipeline's `userSpecJson`,
each merged with the SAME current defaults (`effective`). A pipeline applied once is
then in sync whatever the defaults; restating a default changes nothing; a change made
behind our back shows; and defaults changed without `regenerate` restart nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reconciler.providers.pachyderm.answers import embedded
from reconciler.providers.pachyderm.canonical import USER_MAPS, camel

BUILT_IN: dict[str, Any] = {
    # defaults.go, builtInDefaults, as protojson writes it (int64 as a string).
    "transform": {"image": "ubuntu:20.04"},
    "outputBranch": "master",
    "datumTries": "3",
    "reprocessSpec": "until_success",
}

SYNTHESIZED_2_8: dict[str, Any] = {
    # clusterstate/v2.8.0/defaults.go, defaultsFromEnv, with no PIPELINE_DEFAULT_* or
    # SIDECAR_DEFAULT_* variables set: what every cluster has after install or upgrade.
    "createPipelineRequest": {
        "resourceRequests": {"cpu": 1, "memory": "256Mi", "disk": "1Gi"},
        "sidecarResourceRequests": {"cpu": 1, "memory": "256Mi", "disk": "1Gi"},
    }
}


def json_names(value: Any, field: str = "") -> Any:
    """`value` with every message field under its protobuf JSON name (camelCase), as
    pachd's canonicaliser writes it before merging; map keys (env, labels, ...) and null
    (which deletes in a merge) are kept."""
    if isinstance(value, Mapping):
        if field in USER_MAPS:
            return {str(k): json_names(v) for k, v in value.items()}
        return {camel(str(k)): json_names(v, camel(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [json_names(item, field) for item in value]
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def request_part(defaults_json: str | None) -> dict[str, Any]:
    """The `createPipelineRequest` of a ClusterDefaults or ProjectDefaults JSON (what
    GetClusterDefaults / GetProjectDefaults answer verbatim; `{}` when never set)."""
    if not defaults_json:
        return {}
    try:
        # Too deep is refused: taken as empty, every pipeline would look changed.
        data = embedded(defaults_json, "defaults")
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, Mapping):
        return {}
    named = json_names(data)
    part = named.get("createPipelineRequest")
    return dict(part) if isinstance(part, Mapping) else {}


def effective(
    cluster: Mapping[str, Any], project: Mapping[str, Any], spec: Mapping[str, Any]
) -> dict[str, Any]:
    """The spec that runs: built-in, cluster and project defaults, then `spec`."""
    merged = merge_patch(BUILT_IN, cluster)
    merged = merge_patch(merged, project)
    result = merge_patch(merged, json_names(dict(spec)))
    return dict(result) if isinstance(result, Mapping) else {}
