"""Layer 7, the composition root: from a target's configuration to the provider that serves it.

Rule: the one module (with the command line) that names concrete providers and test
doubles, and only as the installed plugins declare them (`installed_plugins`). `url:
embedded` serves the plugin's own in-process double (`ProviderPlugin.sandbox`: the
built-in platforms share one app on `.reconciler/sandbox.db` beside the manifests, as
`sandbox serve` serves both under one URL); any other url is the real platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.errors import InputError, PluginError, Problem
from reconciler.manifests import Manifests
from reconciler.manifests.cachefile import run_cache
from reconciler.manifests.config import EMBEDDED, TargetConfig
from reconciler.providers.base import Provider
from reconciler.providers.http import KeptConnections, asgi_transport
from reconciler.providers.plugin import Connection, ProviderPlugin, installed_plugins, resolve

SANDBOX_URL = "http://sandbox.invalid"


def sandbox_folder(root: Path) -> Path:
    return root / ".reconciler"


def sandbox_db(root: Path) -> Path:
    """Where the built-in platforms' embedded sandbox keeps its state."""
    return sandbox_folder(root) / "sandbox.db"


class Connector:
    """Implements `reconciler.reconcile.Connector` over the installed provider plugins;
    keeps one embedded app per folder and factory."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        plugins: Mapping[str, ProviderPlugin] | None = None,
        kept: KeptConnections | None = None,
    ) -> None:
        """`kept`: connections to real platforms kept open between runs (`serve`)."""
        self._apps: dict[tuple[Path, str], Any] = {}
        self._environ = os.environ if environ is None else environ
        self._plugins = plugins
        self._kept = kept

    @property
    def plugins(self) -> Mapping[str, ProviderPlugin]:
        if self._plugins is None:
            self._plugins = installed_plugins()
        return self._plugins

    def __call__(self, target: str, config: TargetConfig, manifests: Manifests) -> Provider:
        plugin = self.plugins.get(config.provider)
        if plugin is None:
            raise PluginError(
                f"target '{target}' uses provider '{config.provider}', which is not installed"
            )
        connection = Connection(
            target=target,
            config=config,
            manifests=manifests,
            cache=run_cache(manifests.root),
            environ=self._environ,
            kept=self._kept,
        )
        if config.url == EMBEDDED:
            if plugin.sandbox is None:
                raise InputError(
                    [
                        Problem(
                            str(manifests.config_file or "reconciler.yaml"),
                            message=f"target '{target}': provider '{plugin.name}' has no"
                            " embedded sandbox",
                            hint="give the target the url of a real instance",
                        )
                    ]
                )
            app = self._app(plugin.sandbox, sandbox_folder(manifests.root))
            connection = Connection(
                target=target,
                config=config,
                manifests=manifests,
                cache=connection.cache,
                # The embedded sandbox needs no credentials: the shell's are for real ones.
                environ={},
                transport=asgi_transport(app),
                base_url=SANDBOX_URL,
            )
        return plugin.connect(connection)

    def _app(self, factory: str, folder: Path) -> Any:
        key = (folder, factory)
        if key not in self._apps:
            self._apps[key] = resolve(factory)(folder)
        return self._apps[key]
