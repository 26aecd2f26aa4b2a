"""Layer 7: from a target's configuration to the provider that serves it.

Rule: the only place where platform providers and the sandbox meet. `url: embedded`
runs the sandbox in-process on `.reconciler/sandbox.db` beside the manifests (one app
for every embedded target of a run, as `sandbox serve` serves both platforms under one
URL); any other url is the real platform over HTTPS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.errors import OperationalError
from reconciler.manifests import Manifests
from reconciler.manifests.config import EMBEDDED, InsightsTarget, PachydermTarget
from reconciler.providers import pachyderm
from reconciler.providers.base import Provider
from reconciler.providers.http import asgi_transport
from reconciler.sandbox import create_app

SANDBOX_URL = "http://sandbox.invalid"


def sandbox_db(root: Path) -> Path:
    return root / ".reconciler" / "sandbox.db"


class Connector:
    """Implements `reconciler.engine.Connector`; keeps one embedded sandbox per folder."""

    def __init__(self) -> None:
        self._apps: dict[Path, Any] = {}

    def __call__(
        self, target: str, config: InsightsTarget | PachydermTarget, manifests: Manifests
    ) -> Provider:
        config_file = str(manifests.config_file or "reconciler.yaml")
        transport = None
        base_url = None
        if config.url == EMBEDDED:
            transport = asgi_transport(self._app(sandbox_db(manifests.root)))
            base_url = SANDBOX_URL
        if isinstance(config, PachydermTarget):
            return pachyderm.connect(
                target, config, transport=transport, base_url=base_url, config_file=config_file
            )
        raise OperationalError(
            f"target '{target}': the {config.provider} provider is not part of this build yet"
        )

    def _app(self, db: Path) -> Any:
        if db not in self._apps:
            db.parent.mkdir(parents=True, exist_ok=True)
            self._apps[db] = create_app(db)
        return self._apps[db]
