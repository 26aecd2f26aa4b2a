"""From a configured target to its provider: credentials, the HTTP client, and what
the manifests tell the provider to look for."""

from __future__ import annotations

from typing import cast

from reconciler.errors import InputError, Problem
from reconciler.manifests.values import VariableError, reveal
from reconciler.providers.http import HttpClient
from reconciler.providers.pachyderm.canonical import DEFAULT_PROJECT, input_repos
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.providers.pachyderm.kinds import PipelineSpec
from reconciler.providers.pachyderm.provider import PachydermProvider
from reconciler.providers.pachyderm.target import PachydermTarget
from reconciler.providers.plugin import Connection
from reconciler.retry import Backoff


def connect(connection: Connection) -> PachydermProvider:
    """The provider for a configured target; `connection.transport` serves an in-process
    pachd."""
    target, config = connection.target, cast(PachydermTarget, connection.config)
    manifests = connection.manifests
    headers: dict[str, str] = {}
    if config.auth.token is not None:
        try:
            headers["authn-token"] = reveal(config.auth.token)
        except VariableError as exc:
            raise InputError(
                [
                    Problem(
                        connection.config_file,
                        0,
                        0,
                        f"target '{target}': auth.token: {exc}",
                        exc.hint,
                    )
                ]
            ) from None
    verify: bool | str = config.ca_bundle or config.verify_tls
    http = HttpClient(
        (connection.base_url or config.url).rstrip("/"),
        platform=f"pachd ({target})",
        headers=lambda: headers,
        transport=connection.transport,
        kept=connection.kept,
        verify=verify,
        timeout=config.timeout,
        reads=Backoff(attempts=1 + config.retries, longest_wait=config.timeout),
    )
    # The projects the manifests put pipelines in: their defaults are read even before
    # a first pipeline lands there.
    mine = [r for r in manifests.resources if r.target == target]
    projects = frozenset(r.project or DEFAULT_PROJECT for r in mine if r.kind == "Pipeline")
    # Every project the manifests name (a Project, what lives in one, its defaults, what
    # a pipeline reads from): what is observed; other teams' projects on a shared
    # cluster are not.
    scopes = frozenset(
        r.name if r.kind in ("Project", "ProjectDefaults") else r.project or DEFAULT_PROJECT
        for r in mine
        if r.kind in ("Project", "ProjectDefaults", "Repo", "Pipeline")
    ) | frozenset(
        project
        for r in mine
        if isinstance(r.spec, PipelineSpec)
        for project, _ in input_repos(r.spec.spec_data(), r.project or DEFAULT_PROJECT)
    )
    # Secrets the manifests name: those ListSecret does not show (made by kubectl, Helm,
    # an operator) are looked up one by one with InspectSecret.
    secrets = frozenset(
        {r.name for r in mine if r.kind == "Secret"}
        | {
            name
            for r in mine
            if isinstance(r.spec, PipelineSpec)
            for _, name in r.spec.secret_names()
        }
    )
    return PachydermProvider(
        target,
        PachdClient(http),
        projects,
        secrets=secrets,
        defaults=[r for r in mine if r.kind in ("ClusterDefaults", "ProjectDefaults")],
        pipelines=frozenset(r.id for r in mine if r.kind == "Pipeline"),
        scopes=scopes,
        start_timeout=config.start_timeout,
    )
