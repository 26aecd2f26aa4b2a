"""Layer 7: from a target's configuration to the provider that serves it.

Rule: the only place where platform providers and the sandbox meet. `url: embedded`
runs the sandbox in-process on `.reconciler/sandbox.db` beside the manifests (one app
for every embedded target of a run, as `sandbox serve` serves both platforms under one
URL); any other url is the real platform over HTTPS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.manifests import Manifests
from reconciler.manifests.config import EMBEDDED, InsightsTarget, PachydermTarget
from reconciler.providers import insights, pachyderm
from reconciler.providers.base import Provider
from reconciler.providers.http import asgi_transport
from reconciler.sandbox import create_app

SANDBOX_URL = "http://sandbox.invalid"


def sandbox_db(root: Path) -> Path:
    return root / ".reconciler" / "sandbox.db"


class Connector:
    """Implements `reconciler.engine.Connector`; keeps one embedded sandbox per folder."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._apps: dict[Path, Any] = {}
        self._environ = os.environ if environ is None else environ

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
                target,
                config,
                transport=transport,
                base_url=base_url,
                config_file=config_file,
                manifests=manifests,
            )
        return insights.connect(
            target,
            config,
            manifests,
            # The embedded sandbox needs no credentials: the shell's are for real instances.
            environ=self._environ if config.url != EMBEDDED else {},
            transport=transport,
            base_url=base_url,
            config_file=config_file,
        )

    def _app(self, db: Path) -> Any:
        if db not in self._apps:
            db.parent.mkdir(parents=True, exist_ok=True)
            self._apps[db] = create_app(db)
        return self._apps[db]
