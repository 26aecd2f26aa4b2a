"""Pachyderm kinds: Project, Repo, Secret, and Pipeline (Pachyderm's own pipeline spec).

The Pipeline spec follows `CreatePipelineRequest` of pps_v2 field for field (the JSON
Schema in shared/reference/pachyderm/jsonschema), minus the fields the envelope or the
reconciler owns: `pipeline`, `update`, `reprocess`, `dryRun`. Pachd silently drops
fields it does not know; these models refuse them, so a misspelling is caught here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from reconciler.manifests.model import Model, Value, name_rule

DEFAULT_PROJECT = "default"

PACHYDERM_NAME_RULE = "use letters, digits, '_' and '-', start with a letter or digit, at most 51"
K8S_NAME_RULE = (
    "use lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253"
)

PACHYDERM_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_-]*\Z"
"""pachd's project, repo and pipeline names (pfs.go Project.ValidateName, ancestry)."""
PACHYDERM_NAME_LIMIT = 51

PachydermName = Annotated[
    str,
    name_rule(PACHYDERM_NAME, PACHYDERM_NAME_LIMIT, "Pachyderm name", PACHYDERM_NAME_RULE),
]
KubernetesName = Annotated[
    str,
    name_rule(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z", 253, "Kubernetes secret name", K8S_NAME_RULE),
]


def _int64(value: Any) -> Any:
    # Pachyderm's JSON carries int64 as strings; accept both forms as the gateway does.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


Int64 = Annotated[int, BeforeValidator(_int64)]

DURATION_PATTERN = r"^([0-9]+\.?[0-9]*|\.[0-9]+)s$"


def _duration(value: str) -> str:
    if not re.match(DURATION_PATTERN, value):
        raise PydanticCustomError(
            "duration",
            "'{value}' is not a duration in seconds such as '60s' or '1.5s'",
            {"value": value},
        )
    return value


Duration = Annotated[str, AfterValidator(_duration)]


# Fields of CreatePipelineRequest that a manifest must not set, and why.
RESERVED_PIPELINE_FIELDS = {
    "pipeline": "the pipeline's name and project come from metadata.name and metadata.project",
    "update": "the reconciler decides between create and update",
    "reprocess": "use reprocessOnUpdate: true to reprocess every datum when the spec changes",
    "dryRun": "use `reconciler plan` to see what would change",
    "dry_run": "use `reconciler plan` to see what would change",
}


class ProjectSpec(Model):
    description: str | None = None


class RepoSpec(Model):
    description: str | None = None


class SecretSpec(Model):
    type: str = "Opaque"
    data: dict[str, Value] = Field(default_factory=dict)


# --- the pipeline spec ---------------------------------------------------------------


class SecretMount(Model):
    name: KubernetesName
    key: str | None = None
    mount_path: str | None = None
    env_var: str | None = None


class Transform(Model):
    image: Value | None = None
    cmd: list[Value] | None = None
    err_cmd: list[Value] | None = None
    env: dict[str, Value] | None = None
    secrets: list[SecretMount] | None = None
    image_pull_secrets: list[KubernetesName] | None = None
    stdin: list[Value] | None = None
    err_stdin: list[Value] | None = None
    accept_return_code: list[Int64] | None = None
    debug: bool | None = None
    user: str | None = None
    working_dir: str | None = None
    dockerfile: str | None = None
    memory_volume: bool | None = None
    datum_batching: bool | None = None


class TFJob(Model):
    tf_job: str | None = None


class ParallelismSpec(Model):
    constant: Int64 | None = None


class ObjectStorageEgress(Model):
    url: Value


class SqlFileFormat(Model):
    type: Literal["UNKNOWN", "CSV", "JSON", "PARQUET"] = "UNKNOWN"
    columns: list[str] | None = None


class SqlSecret(Model):
    name: KubernetesName
    key: str


class SQLDatabaseEgress(Model):
    url: Value
    file_format: SqlFileFormat | None = None
    secret: SqlSecret | None = None


class Egress(Model):
    url: Value | None = Field(default=None, alias="URL")
    object_storage: ObjectStorageEgress | None = None
    sql_database: SQLDatabaseEgress | None = None


class GPUSpec(Model):
    type: str | None = None
    number: Int64 | None = None


class ResourceSpec(Model):
    cpu: float | None = None
    memory: str | None = None
    gpu: GPUSpec | None = None
    disk: str | None = None


class Trigger(Model):
    branch: str | None = None
    all: bool | None = None
    rate_limit_spec: str | None = None
    size: str | None = None
    commits: Int64 | None = None
    cron_spec: str | None = None


class PropagationSpec(Model):
    never: bool | None = None


class PFSInput(Model):
    project: PachydermName | None = None
    name: str | None = None
    repo: PachydermName | None = None
    repo_type: str | None = None
    branch: str | None = None
    commit: str | None = None
    glob: str | None = None
    join_on: str | None = None
    outer_join: bool | None = None
    group_by: str | None = None
    lazy: bool | None = None
    empty_files: bool | None = None
    s3: bool | None = None
    trigger: Trigger | None = None
    propagation_spec: PropagationSpec | None = None
    reference: bool | None = None


class CronInput(Model):
    name: str | None = None
    project: PachydermName | None = None
    repo: PachydermName | None = None
    commit: str | None = None
    spec: str | None = None
    overwrite: bool | None = None
    start: str | None = None


class Input(Model):
    pfs: PFSInput | None = None
    join: list[Input] | None = None
    group: list[Input] | None = None
    cross: list[Input] | None = None
    union: list[Input] | None = None
    cron: CronInput | None = None

    @model_validator(mode="after")
    def _one_type(self) -> Input:
        given = [
            name
            for name in ("pfs", "join", "group", "cross", "union", "cron")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise PydanticCustomError(
                "input_types",
                "an input node sets {given}; each node is exactly one of"
                " pfs, join, group, cross, union, cron",
                {"given": " and ".join(given)},
            )
        if not given:
            raise PydanticCustomError(
                "input_types",
                "an input node sets none of pfs, join, group, cross, union, cron",
            )
        return self

    def cron_inputs(self) -> Iterator[tuple[tuple[str | int, ...], CronInput]]:
        """Every cron input below this node, at any depth, with its path from here."""
        if self.cron is not None:
            yield ("cron",), self.cron
        for name in ("join", "group", "cross", "union"):
            children: list[Input] | None = getattr(self, name)
            for index, child in enumerate(children or []):
                for path, cron in child.cron_inputs():
                    yield (name, index, *path), cron

    def pfs_inputs(self) -> Iterator[tuple[tuple[str | int, ...], PFSInput]]:
        """Every pfs input below this node, at any depth, with its path from here."""
        if self.pfs is not None:
            yield ("pfs",), self.pfs
        for name in ("join", "group", "cross", "union"):
            children: list[Input] | None = getattr(self, name)
            for index, child in enumerate(children or []):
                for path, pfs in child.pfs_inputs():
                    yield (name, index, *path), pfs


class Service(Model):
    internal_port: Int64 | None = None
    external_port: Int64 | None = None
    ip: str | None = None
    type: str | None = None


class Spout(Model):
    service: Service | None = None


class DatumSetSpec(Model):
    number: Int64 | None = None
    size_bytes: Int64 | None = None
    per_worker: Int64 | None = None


class SchedulingSpec(Model):
    node_selector: dict[str, str] | None = None
    priority_class_name: str | None = None


class PipelineMetadata(Model):
    annotations: dict[str, str] | None = None
    labels: dict[str, str] | None = None


class Toleration(Model):
    key: str | None = None
    operator: Literal["EMPTY", "EXISTS", "EQUAL"] | None = None
    value: str | None = None
    effect: Literal["ALL_EFFECTS", "NO_SCHEDULE", "PREFER_NO_SCHEDULE", "NO_EXECUTE"] | None = None
    toleration_seconds: Int64 | None = None


class Determined(Model):
    workspaces: list[str] | None = None


class PipelineSpec(Model):
    """CreatePipelineRequest without pipeline/update/reprocess/dryRun, plus our two fields."""

    tf_job: TFJob | None = None
    transform: Transform | None = None
    parallelism_spec: ParallelismSpec | None = None
    egress: Egress | None = None
    output_branch: str | None = None
    s3_out: bool | None = None
    resource_requests: ResourceSpec | None = None
    resource_limits: ResourceSpec | None = None
    sidecar_resource_limits: ResourceSpec | None = None
    sidecar_resource_requests: ResourceSpec | None = None
    input: Input | None = None
    description: str | None = None
    service: Service | None = None
    spout: Spout | None = None
    datum_set_spec: DatumSetSpec | None = None
    datum_timeout: Duration | None = None
    job_timeout: Duration | None = None
    salt: str | None = None
    datum_tries: Int64 | None = None
    scheduling_spec: SchedulingSpec | None = None
    pod_spec: str | None = None
    pod_patch: str | None = None
    metadata: PipelineMetadata | None = None
    reprocess_spec: Literal["until_success", "every_job"] | None = None
    autoscaling: bool | None = None
    tolerations: list[Toleration] | None = None
    determined: Determined | None = None
    maximum_expected_uptime: Duration | None = None

    stopped: bool = False
    """Ours: keep the pipeline stopped (StopPipeline / StartPipeline, never an update)."""
    reprocess_on_update: bool = False
    """Ours: when the spec changes, reprocess every datum (update with reprocess=true)."""

    def secret_names(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """Every Kubernetes secret the pipeline mounts or pulls with, with its path."""
        if self.transform is not None:
            for index, mount in enumerate(self.transform.secrets or []):
                yield ("transform", "secrets", index, "name"), mount.name
            for index, name in enumerate(self.transform.image_pull_secrets or []):
                yield ("transform", "imagePullSecrets", index), name
        if self.egress is not None and self.egress.sql_database is not None:
            secret = self.egress.sql_database.secret
            if secret is not None:
                yield ("egress", "sqlDatabase", "secret", "name"), secret.name


# --- pipeline defaults ------------------------------------------------------------------

CLUSTER_DEFAULTS_NAME = "cluster"
"""The one ClusterDefaults of a target is named `cluster`."""


class DefaultsSpec(Model):
    """pachd's ClusterDefaults / ProjectDefaults (`createPipelineRequest`: the fields every
    pipeline gets unless its spec says otherwise, merged as RFC 7396), and what setting
    them does to the pipelines that exist (SetClusterDefaults / SetProjectDefaults)."""

    create_pipeline_request: PipelineSpec = Field(default_factory=PipelineSpec)
    regenerate: bool = False
    """Recompute every affected pipeline's effective spec now: those that change restart.
    Without it nothing restarts now; pipelines take the new defaults at their next update."""
    reprocess: bool = False
    """With regenerate: the restarted pipelines also process every datum again."""

    @model_validator(mode="after")
    def _pachd_fields_only(self) -> DefaultsSpec:
        ours = {"stopped", "reprocess_on_update"} & self.create_pipeline_request.model_fields_set
        if ours:
            raise PydanticCustomError(
                "defaults_field",
                "{field} is reconciler's own pipeline field, not one pachd can default",
                {"field": sorted(ours)[0]},
            )
        if self.reprocess and not self.regenerate:
            raise PydanticCustomError(
                "reprocess_without_regenerate",
                "reprocess needs regenerate: true (pachd refuses it alone)",
            )
        return self
