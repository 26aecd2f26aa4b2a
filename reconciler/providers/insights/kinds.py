"""kdb Insights kinds: Package (a package folder or a prebuilt .kxi) and Deployment."""

from __future__ import annotations

from typing import Annotated, Literal

import packaging.version
from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from reconciler.errors import has_control
from reconciler.manifests.model import Model, Value, name_rule

INSIGHTS_NAME_RULE = (
    "use lowercase letters, digits and '-', start with a letter, end with a letter or digit,"
    " at most 24"
)

InsightsName = Annotated[
    str,
    name_rule(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z", 24, "kdb Insights name", INSIGHTS_NAME_RULE),
]


def _version(value: str) -> str:
    # PEP 440, as the Package Manager requires, read by `packaging` (epochs, `-rc1`
    # spellings and local versions included).
    try:
        packaging.version.Version(value)
    except packaging.version.InvalidVersion:
        raise PydanticCustomError(
            "package_version",
            "'{value}' is not a PEP 440 package version such as '1.0.0', '2.1.0rc1' or"
            " '1.0.0.post1'",
            {"value": value},
        ) from None
    return value


Version = Annotated[str, AfterValidator(_version)]


def _path(value: str) -> str:
    # No file system takes a NUL in a name (Python refuses to ask it), and no package
    # folder needs a control character: refused here, where the manifest line is known.
    if has_control(value):
        raise PydanticCustomError(
            "package_path",
            "holds a control character: write a path relative to this manifest",
        )
    return value


RelativePath = Annotated[str, AfterValidator(_path)]

ComponentType = Literal["pipeline", "database", "view", "udf", "workload", "router"]


class PackageSpec(Model):
    version: Version
    source: RelativePath | None = None
    """A package folder (with manifest.yaml), relative to this manifest file."""
    artifact: RelativePath | None = None
    """A prebuilt .kxi archive, relative to this manifest file."""

    @model_validator(mode="after")
    def _one_origin(self) -> PackageSpec:
        if (self.source is None) == (self.artifact is None):
            raise PydanticCustomError(
                "package_origin",
                "a Package needs exactly one of 'source' (a package folder) and"
                " 'artifact' (a prebuilt .kxi)",
            )
        return self


class Component(Model):
    type: ComponentType
    name: str


class DeploymentSpec(Model):
    package: InsightsName
    """The name of a Package manifest on the same target."""
    version: Version | None = None
    """Default: the version of that Package manifest."""
    components: list[Component] | None = None
    """Deploy only these components; default: all of the package."""
    env: dict[str, dict[str, Value]] = Field(default_factory=dict)
    """Per component name: environment variables."""
    update_strategy: Literal["redeploy", "hotload"] = "redeploy"
    hotload_targets: list[str] = Field(default_factory=list)
    """With `hotload`: the Data Access Processes and aggregators a new version's code is
    loaded into (patch_deployment_runtime's `targets`)."""
    hotload_global_processes: list[str] = Field(default_factory=list)
    """With `hotload`: global aggregators to load it into (patch_global_proc_runtime)."""
    cleanup_on_delete: bool = False
    """Also delete persisted data when the deployment is deleted."""

    @model_validator(mode="after")
    def _hotload_names_its_processes(self) -> DeploymentSpec:
        # patch_deployment_runtime loads code into named processes: `targets` is not empty.
        named = self.hotload_targets or self.hotload_global_processes
        if self.update_strategy == "hotload" and not named:
            raise PydanticCustomError(
                "hotload_targets",
                "updateStrategy: hotload loads a new version's code into running processes:"
                " name them in hotloadTargets (Data Access Processes, aggregators) or"
                " hotloadGlobalProcesses",
            )
        return self

    @model_validator(mode="after")
    def _env_with_the_whole_package(self) -> DeploymentSpec:
        # client.deployments.create takes entities, create_from_package takes env: the
        # Package Manager accepts env only when the whole package is deployed.
        if self.components is not None and any(self.env.values()):
            raise PydanticCustomError(
                "env_with_components",
                "env goes only with a deploy of the whole package (kdb Insights takes no env"
                " with a list of components): drop components, or env",
            )
        return self
