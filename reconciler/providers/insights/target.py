"""A kdb Insights target in reconciler.yaml: `provider: insights`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.manifests.config import TargetConfig
from reconciler.manifests.model import Model, Value


class InsightsAuth(Model):
    client_id: Value | None = None
    """Default: the INSIGHTS_CLIENT_ID environment variable."""
    client_secret: Value | None = None
    """Default: the INSIGHTS_CLIENT_SECRET environment variable."""
    realm: str | None = None
    """Default: INSIGHTS_REALM, else `insights`."""
    token_url: str | None = None
    """Default: <url>/auth/realms/<realm>/protocol/openid-connect/token, or the same
    without /auth (Keycloak 17 and later), whichever answers."""


class InsightsTarget(TargetConfig):
    provider: Literal["insights"]
    auth: InsightsAuth = Field(default_factory=InsightsAuth)
    deploy_timeout: float = Field(default=600.0, gt=0)
    """Seconds a created, redeployed or bounced deployment may take to be Running."""
