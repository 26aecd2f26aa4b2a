"""What pachd would refuse in a pipeline spec, found before any call.

Two checks beyond the models of `kinds.pachyderm`: the request we would send, validated
against pachd's own JSON Schema (copied unchanged into `reconciler.schemas`), and the
rules pachd applies in code rather than in its schema (NOTES.md, "Validation the server
applies"). Each problem carries the spec path it concerns, so it is reported at the
manifest's file:line.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import fastjsonschema

from reconciler import schemas
from reconciler.manifests.resources import PathKey
from reconciler.providers.pachyderm.cron import cron_problem
from reconciler.providers.pachyderm.kinds import PipelineSpec

if TYPE_CHECKING:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import ValidationError as SchemaError

OURS = ("stopped", "reprocessOnUpdate")
DNS_LABEL = 63
SERVICE_TYPES = frozenset({"NodePort", "ClusterIP", "LoadBalancer"})
"""Spec fields the reconciler acts on itself; never sent to pachd."""

RuleProblem = tuple[PathKey, str, str]


class Accepted(Protocol):
    """Digests of requests pachd's schema accepted before."""

    def __contains__(self, key: object) -> bool: ...

    def add(self, key: bytes) -> None: ...


"""(path in the spec, message, hint)."""


def create_pipeline_request(spec: Mapping[str, Any], project: str, name: str) -> dict[str, Any]:
    """The `CreatePipelineRequest` for a camelCase pipeline spec."""
    request: dict[str, Any] = {"pipeline": {"name": name, "project": {"name": project}}}
    request.update((key, value) for key, value in spec.items() if key not in OURS)
    return request


@cache
def _validator() -> Draft7Validator:
    # Imported only when a spec is refused: jsonschema is slow to import and to run.
    from jsonschema import Draft7Validator

    return Draft7Validator(schemas.load(schemas.CREATE_PIPELINE_REQUEST))


@cache
def _accepts() -> Callable[[Any], Any]:
    """The same schema compiled to Python (fastjsonschema): about 20 times faster than
    walking it, and enough to tell that a spec is valid; only a refused spec goes
    through jsonschema, for errors that say where and why."""
    return fastjsonschema.compile(
        schemas.load(schemas.CREATE_PIPELINE_REQUEST), detailed_exceptions=False
    )


def pipeline_problems(
    spec: PipelineSpec, project: str, name: str, accepted: Accepted | None = None
) -> Iterator[RuleProblem]:
    """What pachd would refuse in `spec`. `accepted` holds digests of requests its schema
    accepted before (a persistent cache): those are not checked again."""
    yield from _schema_problems(spec, project, name, accepted)
    yield from _server_rules(spec)
    yield from _name_rules(project, name)


def _schema_problems(
    spec: PipelineSpec, project: str, name: str, accepted: Accepted | None
) -> Iterator[RuleProblem]:
    request = create_pipeline_request(spec.to_data(), project, name)
    key = _key(request) if accepted is not None else None
    if key is not None and accepted is not None and key in accepted:
        return
    try:
        _accepts()(request)
        if key is not None and accepted is not None:
            accepted.add(key)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    errors: list[SchemaError] = sorted(
        _validator().iter_errors(request), key=lambda e: [str(p) for p in e.absolute_path]
    )
    for error in errors:
        deepest = _deepest(error)
        path: PathKey = tuple(deepest.absolute_path)
        yield (
            path,
            f"pachd's schema for CreatePipelineRequest refuses this: {deepest.message}",
            "see the pipeline specification in the Pachyderm documentation",
        )


def _key(request: dict[str, Any]) -> bytes | None:
    # marshal: exact and fast; it refuses what is not plain data (then: no memo).
    try:
        return hashlib.sha256(marshal.dumps(request)).digest()
    except ValueError:
        return None


def _deepest(error: SchemaError) -> SchemaError:
    # oneOf/anyOf failures hold the real cause among their context: the longest path.
    if not error.context:
        return error
    return max(error.context, key=lambda e: len(e.absolute_path))


def _name_rules(project: str, name: str) -> Iterator[RuleProblem]:
    # api_server.go validatePipelineRequest: the replication controller's name
    # (ppsutil.PipelineRcName at version 99) must fit a DNS label.
    k8s_name = f"{project}-{name}-v99".replace("_", "-").lower()
    if len(k8s_name) > DNS_LABEL:
        yield (
            (),
            f"project and pipeline names are too long together: pachd names the pipeline's"
            f" Kubernetes controller '{k8s_name}', {len(k8s_name) - DNS_LABEL} characters"
            f" over the {DNS_LABEL} allowed",
            "shorten the pipeline or project name",
        )


def _server_rules(spec: PipelineSpec) -> Iterator[RuleProblem]:
    # A spec without `transform` is accepted: the built-in defaults give it one
    # (defaults.go, builtInDefaults), as pachd's own tests rely on.
    for field, shown in (("pod_patch", "podPatch"), ("pod_spec", "podSpec")):
        text = getattr(spec, field)
        if text:
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                yield (
                    (shown,),
                    f"{shown} is not valid JSON ({exc.msg}): pachd refuses a malformed"
                    f" {shown[0].upper()}{shown[1:]}",
                    "write it as a JSON string (a JSON Patch list for podPatch)",
                )
    if spec.transform is not None:
        for index, mount in enumerate(spec.transform.secrets or []):
            if mount.env_var and not mount.key:
                yield (
                    ("transform", "secrets", index),
                    f"secret {mount.name} sets envVar but no key (pachd: has env_var set but"
                    " is missing key)",
                    "add key: the key of the secret whose value the variable gets",
                )
    service, spout = spec.service, spec.spout
    if service is not None and service.type and service.type not in SERVICE_TYPES:
        yield (
            ("service", "type"),
            f"service type '{service.type}' is not allowed (pachd: NodePort, ClusterIP or"
            " LoadBalancer)",
            "use NodePort (the default), ClusterIP or LoadBalancer",
        )
    if service is not None:
        constant = spec.parallelism_spec.constant if spec.parallelism_spec else None
        if constant not in (None, 1):
            yield (
                ("parallelismSpec", "constant"),
                "a service runs with a constant parallelism of 1",
                "set parallelismSpec.constant to 1, or remove parallelismSpec",
            )
    if spout is not None and spec.autoscaling:
        yield (
            ("autoscaling",),
            "autoscaling cannot be used with a spout (spouts are not triggered by inputs)",
            "remove autoscaling",
        )
    if spout is not None and spout.service is None and spec.input is not None:
        yield (
            ("input",),
            "a spout without a service has no input",
            "remove input, or make this a transform pipeline",
        )
    if spec.s3_out and (service is not None or spout is not None):
        yield (
            ("s3Out",),
            "s3Out is not supported in services or spouts",
            "remove s3Out",
        )
    if spec.input is not None:
        for path, cron in spec.input.cron_inputs():
            problem = cron_problem(cron.spec or "")
            if problem:
                yield (
                    ("input", *path, "spec"),
                    f"cron spec '{cron.spec}' does not parse: {problem}",
                    "write five fields ('*/10 * * * *'), or @every 10m, @daily, @never",
                )
        for path, pfs in spec.input.pfs_inputs():
            where: PathKey = ("input", *path)
            if not pfs.repo:
                yield (where, "a pfs input needs a repo", "add repo: the repo to read")
            if not pfs.glob and not pfs.s3:
                yield (
                    (*where, "glob"),
                    "a pfs input needs a glob (pachd: input must specify a glob)",
                    "add glob: '/*' (one datum per top-level file) or '/' (all in one)",
                )
            if pfs.commit:
                yield (
                    (*where, "commit"),
                    "a pfs input cannot name a commit",
                    "remove commit; pipelines follow a branch",
                )
            if pfs.repo == "out" and not pfs.name:
                yield (
                    where,
                    "an input from a repo named 'out' needs a name: /pfs/out is the output",
                    "add name: to this input",
                )
            if pfs.s3:
                if pfs.glob != "/":
                    yield (
                        (*where, "glob"),
                        "an s3 input must use glob '/' (the S3 gateway serves whole commits)",
                        "set glob: / for this input",
                    )
                for flag, value in (("lazy", pfs.lazy), ("emptyFiles", pfs.empty_files)):
                    if value:
                        yield (
                            (*where, flag),
                            f"an s3 input cannot also set {flag}",
                            f"remove {flag}, or s3",
                        )
