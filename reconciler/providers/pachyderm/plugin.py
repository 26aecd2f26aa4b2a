"""The Pachyderm provider as a plugin: its kinds, its target, its policies, `connect`.

Registered in pyproject.toml under the entry point group `reconciler.providers`, as a
third-party provider would be. Importing this module imports the kinds' models and
nothing of the HTTP side: `validate` loads manifests without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, cast

from pydantic import TypeAdapter

from reconciler.manifests.catalog import (
    Accepted,
    BareSpec,
    Clash,
    KindInfo,
    RuleProblem,
    Scope,
    no_references,
)
from reconciler.manifests.model import Model
from reconciler.manifests.resources import PathKey, Reference
from reconciler.providers.pachyderm.kinds import (
    CLUSTER_DEFAULTS_NAME,
    DEFAULT_PROJECT,
    RESERVED_PIPELINE_FIELDS,
    DefaultsSpec,
    KubernetesName,
    PachydermName,
    PipelineSpec,
    ProjectSpec,
    RepoSpec,
    SecretSpec,
)
from reconciler.providers.pachyderm.pipeline_rules import pipeline_problems
from reconciler.providers.pachyderm.target import PachydermTarget
from reconciler.providers.plugin import ProviderPlugin, deferred

API_VERSION = "pachyderm/v1"
IN_PROJECT = Scope("Project", DEFAULT_PROJECT)


def _project_reference(project: str | None) -> Iterator[Reference]:
    if project and project != DEFAULT_PROJECT:
        yield Reference(
            ("Project",),
            project,
            ("metadata", "project"),
            "project",
            hint=f"add a pachyderm/v1 Project manifest named '{project}' (an existing project"
            " is adopted), or leave metadata.project out to use 'default'",
        )


def _repo_references(spec: Model, project: str | None, name: str) -> Iterator[Reference]:
    yield from _project_reference(project)


def _pipeline_references(spec: Model, project: str | None, name: str) -> Iterator[Reference]:
    pipeline = cast(PipelineSpec, spec)
    yield from _project_reference(project)
    if pipeline.input is not None:
        for path, pfs in pipeline.input.pfs_inputs():
            if pfs.repo is None:
                continue
            repo_project = pfs.project or project or DEFAULT_PROJECT
            where: PathKey = ("spec", "input", *path, "repo")
            yield Reference(
                ("Repo", "Pipeline"),
                f"{repo_project}/{pfs.repo}",
                where,
                "pfs input",
                hint=f"add a pachyderm/v1 Repo manifest named '{pfs.repo}' in project"
                f" '{repo_project}' (an existing repo is adopted), or fix the repo name",
            )
    for path, secret in pipeline.secret_names():
        yield Reference(("Secret",), secret, ("spec", *path), "secret", required=False)
    # Defaults the manifests set are applied before the pipelines they shape.
    yield Reference(
        ("ClusterDefaults",), CLUSTER_DEFAULTS_NAME, ("kind",), "defaults", required=False
    )
    yield Reference(
        ("ProjectDefaults",), project or DEFAULT_PROJECT, ("kind",), "defaults", required=False
    )


def _project_defaults_references(
    spec: Model, project: str | None, name: str
) -> Iterator[Reference]:
    if name != DEFAULT_PROJECT:
        yield Reference(
            ("Project",),
            name,
            ("metadata", "name"),
            "project",
            hint=f"add a pachyderm/v1 Project manifest named '{name}' (an existing project is"
            " adopted): a ProjectDefaults is named after its project",
        )


def _pipeline_rules(
    spec: Model, project: str | None, name: str, accepted: Accepted | None
) -> Iterator[RuleProblem]:
    return pipeline_problems(cast(PipelineSpec, spec), project or DEFAULT_PROJECT, name, accepted)


_NAME: TypeAdapter[str] = TypeAdapter(PachydermName)
_KUBERNETES_NAME: TypeAdapter[str] = TypeAdapter(KubernetesName)
_CLUSTER_DEFAULTS_NAME: TypeAdapter[str] = TypeAdapter(Literal["cluster"])


KINDS = (
    KindInfo(
        API_VERSION,
        "Project",
        "pachyderm",
        ProjectSpec,
        _NAME,
        no_references,
        spec_required=False,
        schema_aliases=True,
    ),
    KindInfo(
        API_VERSION,
        "Repo",
        "pachyderm",
        RepoSpec,
        _NAME,
        _repo_references,
        scope=IN_PROJECT,
        spec_required=False,
        # pps/server api_server.go CreatePipeline makes the output repo itself.
        clashes=(
            Clash(
                "Pipeline",
                "Repo '{name}' has the name of a Pipeline of the same project; Pachyderm"
                " makes that repo itself as the pipeline's output",
                "remove this Repo manifest (the pipeline at {other} owns it)",
            ),
        ),
        schema_aliases=True,
    ),
    KindInfo(
        API_VERSION,
        "Pipeline",
        "pachyderm",
        PipelineSpec,
        _NAME,
        _pipeline_references,
        scope=IN_PROJECT,
        reserved=RESERVED_PIPELINE_FIELDS,
        rules=_pipeline_rules,
        bare=BareSpec(("pipeline", "transform"), "Pachyderm pipeline spec", "pipeline"),
        schema_aliases=True,
    ),
    KindInfo(
        API_VERSION,
        "Secret",
        "pachyderm",
        SecretSpec,
        _KUBERNETES_NAME,
        no_references,
        sensitive=("data",),
        schema_aliases=True,
    ),
    KindInfo(
        API_VERSION,
        "ClusterDefaults",
        "pachyderm",
        DefaultsSpec,
        _CLUSTER_DEFAULTS_NAME,
        no_references,
        spec_required=False,
        schema_aliases=True,
    ),
    KindInfo(
        API_VERSION,
        "ProjectDefaults",
        "pachyderm",
        DefaultsSpec,
        _NAME,
        _project_defaults_references,
        spec_required=False,
        schema_aliases=True,
    ),
)


PLUGIN = ProviderPlugin(
    name="pachyderm",
    target=PachydermTarget,
    kinds=KINDS,
    # Imported when first used: loading manifests needs no HTTP client.
    policies=deferred("reconciler.providers.pachyderm.policies:PachydermPolicies"),
    connect=deferred("reconciler.providers.pachyderm.connection:connect"),
    sandbox="reconciler.sandbox:embedded",
    default_target=True,
)
