"""From a configured target to its provider: credentials, the HTTP client, and what
the manifests tell the provider to look for."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from reconciler.errors import InputError, Problem
from reconciler.manifests.values import Sensitive, VariableError, reveal
from reconciler.providers.http import HttpClient
from reconciler.providers.insights.auth import KeycloakAuth, token_paths
from reconciler.providers.insights.client import PackageManagerClient
from reconciler.providers.insights.provider import InsightsProvider, Waiting
from reconciler.providers.insights.target import InsightsTarget
from reconciler.providers.plugin import Connection
from reconciler.retry import Backoff


def connect(connection: Connection) -> InsightsProvider:
    """The provider for a configured target; `connection.transport` serves an
    in-process sandbox."""
    target, config = connection.target, cast(InsightsTarget, connection.config)
    environ = connection.environ
    url = (connection.base_url or config.url).rstrip("/")
    verify: bool | str = config.ca_bundle or config.verify_tls
    platform = f"kdb Insights ({target})"
    auth = _auth(target, config, environ, url, verify, connection)
    http = HttpClient(
        url,
        platform=platform,
        auth=auth,
        transport=connection.transport,
        kept=connection.kept,
        verify=verify,
        timeout=config.timeout,
        reads=Backoff(attempts=1 + config.retries, longest_wait=config.timeout),
    )
    return InsightsProvider(
        target,
        PackageManagerClient(http),
        connection.manifests,
        # No cache folder (it would lie inside the repository): builds go to scratch.
        connection.cache or Path(tempfile.mkdtemp(prefix="reconciler-builds-")),
        Waiting(timeout=config.deploy_timeout),
    )


def _auth(
    target: str,
    config: InsightsTarget,
    environ: Mapping[str, str],
    url: str,
    verify: bool | str,
    connection: Connection,
) -> KeycloakAuth | None:
    settings = config.auth
    config_file = connection.config_file
    client_id = settings.client_id or environ.get("INSIGHTS_CLIENT_ID")
    client_secret = settings.client_secret or environ.get("INSIGHTS_CLIENT_SECRET")
    if client_id is None and client_secret is None:
        return None  # the embedded sandbox, or an instance that needs no token
    if client_id is None or client_secret is None:
        missing = "clientId (INSIGHTS_CLIENT_ID)" if client_id is None else "clientSecret"
        if client_secret is None:
            missing = "clientSecret (INSIGHTS_CLIENT_SECRET)"
        raise InputError(
            [
                Problem(
                    config_file,
                    message=f"target '{target}': auth.{missing} is not set",
                    hint="set both the client id and the client secret of a Keycloak service"
                    " account, or neither",
                )
            ]
        )
    id_value, secret_value = (
        _revealed(target, "clientId", client_id, config_file),
        _revealed(target, "clientSecret", client_secret, config_file),
    )
    realm = settings.realm or environ.get("INSIGHTS_REALM") or "insights"
    urls = (settings.token_url,) if settings.token_url else token_paths(realm)
    keycloak = HttpClient(
        url,
        platform=f"Keycloak ({target})",
        transport=connection.transport,
        kept=connection.kept,
        verify=verify,
        timeout=config.timeout,
    )
    return KeycloakAuth(keycloak, urls, lambda: id_value, lambda: secret_value)


def _revealed(target: str, field: str, value: str | Sensitive, config_file: str) -> str:
    try:
        return reveal(value)
    except VariableError as exc:
        raise InputError(
            [Problem(config_file, 0, 0, f"target '{target}': auth.{field}: {exc}", exc.hint)]
        ) from None
