"""The kdb Insights provider as a plugin: its kinds, its target, its policies, `connect`.

Registered in pyproject.toml under the entry point group `reconciler.providers`, as a
third-party provider would be. Importing this module imports the kinds' models and
nothing of the HTTP side: `validate` loads manifests without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from pydantic import TypeAdapter

from reconciler.manifests.catalog import KindInfo, no_references
from reconciler.manifests.model import Model
from reconciler.manifests.resources import Reference
from reconciler.providers.insights.kinds import DeploymentSpec, InsightsName, PackageSpec
from reconciler.providers.insights.package_source import package_content
from reconciler.providers.insights.target import InsightsTarget
from reconciler.providers.plugin import ProviderPlugin, deferred

API_VERSION = "insights/v1"


def _deployment_references(spec: Model, scope: str | None, name: str) -> Iterator[Reference]:
    deployment = cast(DeploymentSpec, spec)
    yield Reference(
        ("Package",),
        deployment.package,
        ("spec", "package"),
        "package",
        hint=f"add an insights/v1 Package manifest named '{deployment.package}', or fix the name",
    )


_NAME: TypeAdapter[str] = TypeAdapter(InsightsName)

KINDS = (
    KindInfo(
        API_VERSION,
        "Package",
        "insights",
        PackageSpec,
        _NAME,
        no_references,
        content=package_content,
        content_field="source",
    ),
    KindInfo(
        API_VERSION,
        "Deployment",
        "insights",
        DeploymentSpec,
        _NAME,
        _deployment_references,
        # Deployments are keyed by package (at most one version of a package deployed):
        # a Deployment's id is its package's name, whatever its metadata.name.
        identity="package",
    ),
)


PLUGIN = ProviderPlugin(
    name="insights",
    target=InsightsTarget,
    kinds=KINDS,
    # Imported when first used: loading manifests needs no HTTP client.
    policies=deferred("reconciler.providers.insights.policies:InsightsPolicies"),
    connect=deferred("reconciler.providers.insights.connection:connect"),
    sandbox="reconciler.sandbox:embedded",
    default_target=True,
)
