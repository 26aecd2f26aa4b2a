"""Layer 3: how a platform plugs in, and what it is given to serve one target.

Rule: imports `reconciler.providers.base`, `reconciler.providers.http` (the transport a
test double is reached through), `reconciler.manifests` and `reconciler.errors`.

A provider package registers a `ProviderPlugin` under the entry point group
`reconciler.providers` (README, "Writing a provider"): its name (the `provider:` of its
targets), its target model and kinds (read by the loader through
`reconciler.manifests.catalog`), its policies (the pure half), and `connect`, which
makes the `Provider` of one target from a `Connection`. The built-in platforms register
the same way (pyproject.toml).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import PluginError
from reconciler.manifests import Manifests
from reconciler.manifests.catalog import KindInfo, installed
from reconciler.manifests.config import TargetConfig
from reconciler.providers.base import Policies, Provider
from reconciler.providers.http import KeptConnections, Transport


@dataclass(frozen=True)
class Connection:
    """What `ProviderPlugin.connect` is given to serve one configured target."""

    target: str
    """The target's name in reconciler.yaml."""
    config: TargetConfig
    """Of the plugin's own target model."""
    manifests: Manifests
    """Every resource of the run (a provider picks those of its target) and the content
    its kinds listed (`manifests.content`)."""
    cache: Path | None
    """A folder of the user's cache for this manifests folder (builds); None: cache
    nothing."""
    environ: Mapping[str, str]
    """The environment to read credentials from (empty for the embedded sandbox)."""
    transport: Transport | None = None
    """Calls an in-process test double instead of the network (`url: embedded`)."""
    base_url: str | None = None
    """The address to use instead of `config.url` (with `transport`)."""
    kept: KeptConnections | None = None
    """Connections kept open between runs (`serve`): give it to every `HttpClient`."""

    @property
    def config_file(self) -> str:
        """Where errors about the target's settings point."""
        return str(self.manifests.config_file or "reconciler.yaml")


@dataclass(frozen=True)
class ProviderPlugin:
    """A platform, as it registers itself under the entry point group
    `reconciler.providers` (the entry point's name is the plugin's `name`)."""

    name: str
    """The `provider:` of its targets in reconciler.yaml."""
    target: type[TargetConfig]
    kinds: tuple[KindInfo, ...]
    policies: Callable[[], Policies]
    """The pure half alone: what a change takes, without any connection."""
    connect: Callable[[Connection], Provider]
    sandbox: str | None = None
    """`module:function` of an in-process test double served for `url: embedded`: the
    function takes the `.reconciler` folder beside the manifests and returns an ASGI
    app. Plugins naming the same function share one app."""
    default_target: bool = False
    """Without reconciler.yaml, a target named after the plugin on `url: embedded`."""


def deferred(reference: str) -> Callable[..., Any]:
    """The function `module:name` names, imported on its first call: a plugin declares
    its policies and `connect` so, and loading manifests imports none of the HTTP side.
    A reference that cannot be loaded is the plugin's error (PluginError)."""

    def call(*args: Any) -> Any:
        return resolve(reference)(*args)

    return call


def resolve(reference: str) -> Callable[..., Any]:
    """The function `module:name` names (a plugin's deferred call, its embedded double)."""
    module, _, name = reference.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"'{reference}' cannot be loaded: {exc}") from exc
    if not callable(found):
        raise PluginError(f"'{reference}' is not a function")
    return found  # type: ignore[no-any-return]


def installed_plugins() -> dict[str, ProviderPlugin]:
    """Every installed provider plugin by name."""
    plugins: dict[str, ProviderPlugin] = {}
    for plugin in installed().plugins.values():
        if not isinstance(plugin, ProviderPlugin):
            raise PluginError(
                f"the provider plugin '{plugin.name}' is a {type(plugin).__name__}, not a"
                " reconciler.providers.base.ProviderPlugin"
            )
        plugins[plugin.name] = plugin
    return plugins
