"""A Pachyderm target in reconciler.yaml: `provider: pachyderm`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.manifests.config import TargetConfig
from reconciler.manifests.model import Model, Value


class PachydermAuth(Model):
    token: Value | None = None
    """Sent as the `authn-token` header; normally ${env:PACHYDERM_TOKEN}."""


class PachydermTarget(TargetConfig):
    provider: Literal["pachyderm"]
    auth: PachydermAuth = Field(default_factory=PachydermAuth)
    start_timeout: float = Field(default=300.0, gt=0)
    """Seconds a created or updated pipeline may stay PIPELINE_STARTING before the action
    fails (a pipeline that goes CRASHING or FAILURE fails it at once, with pachd's reason)."""
