"""Layer 4: the Pachyderm provider (projects, repos, secrets, pipelines) over pachd's
REST gateway.

Rule: imports `reconciler.providers.base`, `reconciler.providers.http`, `reconciler.diff`,
`reconciler.manifests` and `reconciler.errors`; never another platform's provider, never
httpx. Modules: `client` (one method per RPC), `normal` (one canonical form for both
sides), `policies` (what a change takes; pure), `provider` (observe and the actions).
"""

from __future__ import annotations

from reconciler.errors import InputError, Problem
from reconciler.manifests import Manifests
from reconciler.manifests.config import PachydermTarget
from reconciler.manifests.kinds.pachyderm import PipelineSpec
from reconciler.manifests.values import VariableError, reveal
from reconciler.providers.http import HttpClient, Transport
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.providers.pachyderm.normal import DEFAULT_PROJECT
from reconciler.providers.pachyderm.policies import PachydermPolicies
from reconciler.providers.pachyderm.provider import PachydermProvider
from reconciler.retry import Backoff

__all__ = ["PachydermPolicies", "PachydermProvider", "connect"]


def connect(
    target: str,
    config: PachydermTarget,
    *,
    transport: Transport | None = None,
    base_url: str | None = None,
    config_file: str = "reconciler.yaml",
    manifests: Manifests | None = None,
) -> PachydermProvider:
    """The provider for a configured target; `transport` serves an in-process pachd."""
    headers: dict[str, str] = {}
    if config.auth.token is not None:
        try:
            headers["authn-token"] = reveal(config.auth.token)
        except VariableError as exc:
            raise InputError(
                [Problem(config_file, 0, 0, f"target '{target}': auth.token: {exc}", exc.hint)]
            ) from None
    verify: bool | str = config.ca_bundle or config.verify_tls
    http = HttpClient(
        (base_url or config.url).rstrip("/"),
        platform=f"pachd ({target})",
        headers=lambda: headers,
        transport=transport,
        verify=verify,
        timeout=config.timeout,
        reads=Backoff(attempts=1 + config.retries, longest_wait=config.timeout),
    )
    # The projects the manifests put pipelines in: their defaults are read even before
    # a first pipeline lands there.
    mine = [r for r in (manifests.resources if manifests is not None else ()) if r.target == target]
    projects = frozenset(r.project or DEFAULT_PROJECT for r in mine if r.kind == "Pipeline")
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
        start_timeout=config.start_timeout,
    )
