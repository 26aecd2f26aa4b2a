"""The shape of pachd's answers, checked before the provider reads them.

A platform's answer is untrusted input: a gateway, a proxy or a pachd of another version
may send a string where an object was expected. Each RPC whose answer the provider reads
has its shape here: every field it walks into must be an object (or absent, or null),
every list a list, every value it takes a scalar. Anything else is a `PermanentError`
naming the RPC and the field, never an AttributeError deep in the provider. Fields the
provider does not read are not looked at (a newer pachd adds fields; they stay welcome).
Field names and types: pachd's protos (pfs.proto ProjectInfo, RepoInfo; pps.proto
PipelineInfo, SecretInfo, Set*DefaultsResponse) as the gateway writes them (camelCase).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reconciler.errors import PermanentError
from reconciler.manifests.documents import MAX_DEPTH, deeper

SCALAR = "scalar"
"""A string, number or boolean (or null)."""

Shape = Mapping[str, "Shape | str | list[Shape]"]

_PROJECT: Shape = {"name": SCALAR}
_PIPELINE: Shape = {"name": SCALAR, "project": _PROJECT}
PIPELINE_INFO: Shape = {
    "pipeline": _PIPELINE,
    "version": SCALAR,
    "userSpecJson": SCALAR,
    "effectiveSpecJson": SCALAR,
    "state": SCALAR,
    "reason": SCALAR,
    "stopped": SCALAR,
}
_SECRET_INFO: Shape = {"secret": {"name": SCALAR}, "type": SCALAR}

SHAPES: dict[str, Shape] = {
    # server streams: the shape of each item
    "pfs_v2.API/ListProject": {"project": _PROJECT, "description": SCALAR},
    "pfs_v2.API/ListRepo": {
        "repo": {"name": SCALAR, "type": SCALAR, "project": _PROJECT},
        "description": SCALAR,
    },
    "pps_v2.API/ListPipeline": PIPELINE_INFO,
    # unary calls: the shape of the answer
    "pps_v2.API/InspectPipeline": PIPELINE_INFO,
    "pps_v2.API/ListSecret": {"secretInfo": [_SECRET_INFO]},
    "pps_v2.API/InspectSecret": _SECRET_INFO,
    "pps_v2.API/GetClusterDefaults": {"clusterDefaultsJson": SCALAR},
    "pps_v2.API/GetProjectDefaults": {"projectDefaultsJson": SCALAR},
    "pps_v2.API/SetClusterDefaults": {"affectedPipelines": [_PIPELINE]},
    "pps_v2.API/SetProjectDefaults": {"affectedPipelines": [_PIPELINE]},
    "pfs_v2.API/DeleteRepo": {"deleted": SCALAR},
}


def checked(rpc: str, answer: Any, *, item: bool = False) -> Any:
    """`answer` (a unary answer, or with `item` one item of a stream, which null is not),
    refused unless it has the shape `SHAPES` gives `rpc`; answers the provider does not
    read pass as they are."""
    shape = SHAPES.get(rpc)
    if shape is not None:
        _conform(answer, shape, rpc, "", required=item)
    return answer


def _conform(
    value: Any, shape: Shape | str | list[Shape], rpc: str, field: str, *, required: bool = False
) -> None:
    """`required`: null is not allowed here (an item of a stream or of a list)."""
    if value is None:
        if required:
            raise _refused(rpc, field, "an object", value)
        return
    if shape == SCALAR:
        if not isinstance(value, str | int | float | bool):
            raise _refused(rpc, field, "a string, number or boolean", value)
        return
    if isinstance(shape, list):
        if not isinstance(value, list):
            raise _refused(rpc, field, "a list", value)
        for index, item in enumerate(value):
            _conform(item, shape[0], rpc, f"{field}[{index}]", required=True)
        return
    if not isinstance(value, dict):
        raise _refused(rpc, field, "an object", value)
    assert isinstance(shape, Mapping)
    for key, inner in shape.items():
        _conform(value.get(key), inner, rpc, f"{field}.{key}" if field else key)


def _refused(rpc: str, field: str, wanted: str, value: Any) -> PermanentError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    where = f"its {field}" if field else "its answer"
    return PermanentError(
        f"pachd answered {rpc} with something reconciler cannot read: {where} is {shown},"
        f" not {wanted} (a gateway or proxy in between, or a pachd this version does not"
        " know?)"
    )


def embedded(text: str, what: str) -> Any:
    """JSON pachd keeps in a string field (a pipeline's user spec, the defaults), parsed;
    `json.JSONDecodeError` when it is not JSON. Nested more than `MAX_DEPTH` levels (the
    bound manifests have) is a `PermanentError`: the defaults merge, the canonical form
    and the diff walk it recursively, and would exhaust Python's recursion."""
    too_deep = PermanentError(f"pachd sent {what} nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text)
    except RecursionError:
        raise too_deep from None
    if deeper(data, MAX_DEPTH):
        raise too_deep
    return data
