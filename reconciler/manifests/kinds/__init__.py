"""The registry of manifest kinds: what each is, where it lives, and what it refers to."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from pydantic import TypeAdapter, ValidationError

from reconciler.manifests.kinds.insights import DeploymentSpec, PackageSpec
from reconciler.manifests.kinds.pachyderm import (
    CLUSTER_DEFAULTS_NAME,
    DEFAULT_PROJECT,
    RESERVED_PIPELINE_FIELDS,
    DefaultsSpec,
    PipelineSpec,
    ProjectSpec,
    RepoSpec,
    SecretSpec,
)
from reconciler.manifests.kinds.pipeline_rules import Accepted, RuleProblem, pipeline_problems
from reconciler.manifests.model import InsightsName, KubernetesName, Model, PachydermName
from reconciler.manifests.resources import PathKey, Reference, ResourceId

ReferenceFinder = Callable[[Model, str | None, str], Iterator[Reference]]
RuleChecker = Callable[[Model, str | None, str, Accepted | None], Iterator[RuleProblem]]
"""The platform's own rules beyond the model: (spec path, message, hint) for each breach;
the last argument, when given, remembers specs found valid before (see `parse_cache`)."""


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    provider: str
    spec_model: type[Model]
    scoped: bool
    """Has a project (pachyderm kinds below Project)."""
    name_adapter: TypeAdapter[str]
    references: ReferenceFinder
    reserved: Mapping[str, str] = field(default_factory=dict)
    spec_required: bool = True
    rules: RuleChecker | None = None

    def check_name(self, name: str) -> str | None:
        """The reason `name` is not a valid name for this kind, or None."""
        try:
            self.name_adapter.validate_python(name)
        except ValidationError as exc:
            return str(exc.errors()[0]["msg"])
        return None


def _no_references(spec: Model, project: str | None, name: str) -> Iterator[Reference]:
    return iter(())


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


def _deployment_references(spec: Model, project: str | None, name: str) -> Iterator[Reference]:
    deployment = cast(DeploymentSpec, spec)
    yield Reference(
        ("Package",),
        deployment.package,
        ("spec", "package"),
        "package",
        hint=f"add an insights/v1 Package manifest named '{deployment.package}', or fix the name",
    )


_PACHYDERM_NAME = TypeAdapter(PachydermName)
_INSIGHTS_NAME = TypeAdapter(InsightsName)
_KUBERNETES_NAME = TypeAdapter(KubernetesName)
_CLUSTER_DEFAULTS_NAME: TypeAdapter[str] = TypeAdapter(Literal["cluster"])

KINDS: dict[tuple[str, str], KindInfo] = {
    (info.api_version, info.kind): info
    for info in (
        KindInfo(
            "insights/v1", "Package", "insights", PackageSpec, False, _INSIGHTS_NAME, _no_references
        ),
        KindInfo(
            "insights/v1",
            "Deployment",
            "insights",
            DeploymentSpec,
            False,
            _INSIGHTS_NAME,
            _deployment_references,
        ),
        KindInfo(
            "pachyderm/v1",
            "Project",
            "pachyderm",
            ProjectSpec,
            False,
            _PACHYDERM_NAME,
            _no_references,
            spec_required=False,
        ),
        KindInfo(
            "pachyderm/v1",
            "Repo",
            "pachyderm",
            RepoSpec,
            True,
            _PACHYDERM_NAME,
            _repo_references,
            spec_required=False,
        ),
        KindInfo(
            "pachyderm/v1",
            "Pipeline",
            "pachyderm",
            PipelineSpec,
            True,
            _PACHYDERM_NAME,
            _pipeline_references,
            RESERVED_PIPELINE_FIELDS,
            rules=_pipeline_rules,
        ),
        KindInfo(
            "pachyderm/v1",
            "Secret",
            "pachyderm",
            SecretSpec,
            False,
            _KUBERNETES_NAME,
            _no_references,
        ),
        KindInfo(
            "pachyderm/v1",
            "ClusterDefaults",
            "pachyderm",
            DefaultsSpec,
            False,
            _CLUSTER_DEFAULTS_NAME,
            _no_references,
            spec_required=False,
        ),
        KindInfo(
            "pachyderm/v1",
            "ProjectDefaults",
            "pachyderm",
            DefaultsSpec,
            False,
            _PACHYDERM_NAME,
            _project_defaults_references,
            spec_required=False,
        ),
    )
}

API_VERSIONS = sorted({api for api, _ in KINDS})
PROVIDERS = sorted({info.provider for info in KINDS.values()})


def depends_on_reference(
    entry: str, position: int, *, target: str, provider: str, project: str | None
) -> Reference | None:
    """A `dependsOn` entry as a reference, or None if it is not an id of a known kind.

    The target defaults to the referring resource's own when both kinds have the same
    provider, else to the target named after the provider; a project-scoped name
    without a project means the referring resource's project.
    """
    kind = entry.split(":", 1)[-1].split("/", 1)[0]
    infos = find(kind)
    if not infos:
        return None
    info = infos[0]
    parsed = ResourceId.parse(
        entry, default_target=target if info.provider == provider else info.provider
    )
    if parsed is None:
        return None
    name = parsed.name
    if info.scoped and "/" not in name:
        name = f"{project or DEFAULT_PROJECT}/{name}"
    return Reference(
        (parsed.kind,),
        name,
        ("metadata", "dependsOn", position),
        "dependsOn",
        hint="write the id of a resource defined in the manifests, e.g."
        " pachyderm:Repo/default/images (see `reconciler validate --format json`)",
        target=parsed.target,
    )


def kinds_of(api_version: str) -> list[str]:
    return sorted(kind for api, kind in KINDS if api == api_version)


def find(kind: str) -> list[KindInfo]:
    return [info for (_, k), info in KINDS.items() if k == kind]
