"""What the installed provider plugins declare to the loader: their kinds and targets.

A provider plugin (see `reconciler.providers.base.ProviderPlugin`) is found through the
Python entry point group `reconciler.providers`. The loader needs only part of what it
declares, and reads it through the `Declares` protocol below: the plugin's name (the
`provider:` of a target in reconciler.yaml), its target configuration model, and its
kinds, each a `KindInfo` (apiVersion/kind, typed spec model, naming rule, references,
the platform's own rules, and the files the kind's content comes from).

A `Catalog` is those declarations put together: the kinds by apiVersion and kind, the
configuration model with one target type per provider, and the default targets used
without reconciler.yaml. `installed()` is the catalog of every installed plugin; tests
and tools may build one from any plugins they like.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Protocol, Union, runtime_checkable

from pydantic import Field, TypeAdapter, ValidationError, create_model

from reconciler.errors import PluginError
from reconciler.manifests.config import EMBEDDED, Config, TargetConfig
from reconciler.manifests.model import Model
from reconciler.manifests.parse_cache import ParseCache
from reconciler.manifests.reporting import ProblemAt, Reporter
from reconciler.manifests.resources import PathKey, Reference, Resource, ResourceId

ENTRY_POINT_GROUP = "reconciler.providers"

RuleProblem = tuple[PathKey, str, str]
"""(path in the spec, message, hint)."""


class Accepted(Protocol):
    """Digests of specs the platform's rules accepted before (kept by `parse_cache`)."""

    def __contains__(self, key: object) -> bool: ...

    def add(self, key: bytes) -> None: ...


ReferenceFinder = Callable[[Model, str | None, str], Iterator[Reference]]
"""(spec, scope, name) -> what the resource refers to."""
RuleChecker = Callable[[Model, str | None, str, Accepted | None], Iterator[RuleProblem]]
"""The platform's own rules beyond the model: (spec path, message, hint) for each breach;
the last argument, when given, remembers specs found valid before."""


@dataclass(frozen=True)
class Scope:
    """A kind whose resources live inside another resource of the same platform (a
    Pachyderm Repo in a Project), named by `metadata.project`."""

    kind: str
    """The kind of the enclosing resource; its naming rule checks the scope's name."""
    default: str
    """The scope of a manifest without `metadata.project`."""


@dataclass(frozen=True)
class Content:
    """The files a resource's content comes from (a package folder), as its kind lists
    them: the provider reads them, a revision's review shows each by digest."""

    source: Path
    files: tuple[tuple[str, Path], ...] = ()
    """(path inside the content, file) in order; a single file lists itself."""


@dataclass(frozen=True)
class ContentRequest:
    """What a kind's content check is given for one resource."""

    resource: Resource
    file: Path
    """The manifest file."""
    root: Path
    """The manifests folder: content never leads outside it."""
    problem: ProblemAt
    report: Reporter
    cache: ParseCache | None


ContentCheck = Callable[[ContentRequest], Content | None]


@dataclass(frozen=True)
class Clash:
    """Another kind whose resource of the same name the platform makes from one of this
    kind (a Pachyderm pipeline makes its output repo): both in the manifests is an error."""

    kind: str
    message: str
    """Formatted with `name`."""
    hint: str
    """Formatted with `other`, where the resource of `kind` is defined."""


@dataclass(frozen=True)
class BareSpec:
    """How to recognise the platform's own spec format pasted without our envelope."""

    fields: tuple[str, ...]
    """Top-level fields that together say it (`pipeline` and `transform`)."""
    what: str
    """What it is, for the hint: "Pachyderm pipeline spec"."""
    drop: str
    """The field the envelope replaces (the spec without it)."""


"""The content of a resource, or None with the problems reported."""


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    provider: str
    spec_model: type[Model]
    name_adapter: TypeAdapter[str]
    references: ReferenceFinder
    scope: Scope | None = None
    reserved: Mapping[str, str] = field(default_factory=dict)
    """Spec fields a manifest must not set, and why."""
    spec_required: bool = True
    rules: RuleChecker | None = None
    content: ContentCheck | None = None
    content_field: str | None = None
    """The spec field naming a folder whose files are content, not manifests."""
    sensitive: tuple[str, ...] = ()
    """Top-level spec fields whose literal values are secret (a Secret's `data`)."""
    clashes: tuple[Clash, ...] = ()
    identity: str | None = None
    """A spec field that names the resource on the platform, where the platform keys it
    so (a kdb Insights deployment is its package's): the resource's id takes its value,
    not `metadata.name`, and no two manifests of this kind on one target may share it."""
    bare: BareSpec | None = None
    schema_aliases: bool = False
    """The platform also accepts snake_case field names (protojson): the JSON Schema
    lists both spellings."""

    def check_name(self, name: str) -> str | None:
        """The reason `name` is not a valid name for this kind, or None."""
        try:
            self.name_adapter.validate_python(name)
        except ValidationError as exc:
            return str(exc.errors()[0]["msg"])
        return None


def no_references(spec: Model, scope: str | None, name: str) -> Iterator[Reference]:
    return iter(())


@runtime_checkable
class Declares(Protocol):
    """What the loader reads of a provider plugin."""

    @property
    def name(self) -> str: ...

    @property
    def target(self) -> type[TargetConfig]: ...

    @property
    def kinds(self) -> Sequence[KindInfo]: ...

    @property
    def default_target(self) -> bool:
        """Without reconciler.yaml, a target named after the provider, on `embedded`."""
        ...


class Catalog:
    """The kinds and target types of a set of provider plugins."""

    def __init__(self, plugins: Sequence[Declares]) -> None:
        self.plugins: dict[str, Declares] = {}
        self.kinds: dict[tuple[str, str], KindInfo] = {}
        for plugin in plugins:
            if plugin.name in self.plugins:
                raise PluginError(f"two provider plugins are named '{plugin.name}'")
            self.plugins[plugin.name] = plugin
            for info in plugin.kinds:
                key = (info.api_version, info.kind)
                if key in self.kinds:
                    raise PluginError(
                        f"{info.api_version} {info.kind} is declared by providers"
                        f" '{self.kinds[key].provider}' and '{info.provider}'"
                    )
                self.kinds[key] = info
        self.api_versions = sorted({api for api, _ in self.kinds})

    def only(self, names: Sequence[str]) -> Catalog:
        return Catalog([self.plugins[name] for name in names if name in self.plugins])

    def kinds_of(self, api_version: str) -> list[str]:
        return sorted(kind for api, kind in self.kinds if api == api_version)

    def find(self, kind: str) -> list[KindInfo]:
        return [info for (_, k), info in self.kinds.items() if k == kind]

    def scope_info(self, info: KindInfo) -> KindInfo | None:
        if info.scope is None:
            return None
        return self.kinds.get((info.api_version, info.scope.kind))

    def default_targets(self) -> dict[str, TargetConfig]:
        return {
            name: plugin.target.model_validate({"provider": name, "url": EMBEDDED})
            for name, plugin in sorted(self.plugins.items())
            if plugin.default_target
        }

    @cached_property
    def config_model(self) -> type[Config]:
        """reconciler.yaml's model: each target validated by its provider's model."""
        models = [plugin.target for _, plugin in sorted(self.plugins.items())]
        target: Any
        if not models:
            target = TargetConfig
        elif len(models) == 1:
            target = models[0]
        else:
            target = Annotated[Union[tuple(models)], Field(discriminator="provider")]  # noqa: UP007
        model: type[Config] = create_model(
            "Config",
            __base__=Config,
            __doc__=Config.__doc__,
            targets=(dict[str, target], Field(default_factory=self.default_targets)),
        )
        return model

    def depends_on_reference(
        self, entry: str, position: int, *, target: str, provider: str, scope: str | None
    ) -> Reference | None:
        """A `dependsOn` entry as a reference, or None if it is not an id of a known kind.

        The target defaults to the referring resource's own when both kinds have the
        same provider, else to the target named after the provider; a scoped name without
        its scope means the referring resource's scope.
        """
        kind = entry.split(":", 1)[-1].split("/", 1)[0]
        infos = self.find(kind)
        if not infos:
            return None
        info = infos[0]
        parsed = ResourceId.parse(
            entry, default_target=target if info.provider == provider else info.provider
        )
        if parsed is None:
            return None
        name = parsed.name
        if info.scope is not None and "/" not in name:
            name = f"{scope or info.scope.default}/{name}"
        return Reference(
            (parsed.kind,),
            name,
            ("metadata", "dependsOn", position),
            "dependsOn",
            hint="write the id of a resource defined in the manifests, <target>:<Kind>/<name>"
            " (`reconciler validate --format json` lists every id)",
            target=parsed.target,
        )


@cache
def installed() -> Catalog:
    """Every provider plugin installed in this Python environment."""
    return Catalog(load_plugins())


def load_plugins() -> list[Declares]:
    """The objects the `reconciler.providers` entry points name, in name order."""
    found: list[Declares] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            plugin = point.load()
        except Exception as exc:  # a third party's import error, whatever it is
            raise PluginError(
                f"the provider plugin '{point.name}' ({point.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(plugin, Declares) or plugin.name != point.name:
            raise PluginError(
                f"the entry point '{point.name}' ({point.value}) of group"
                f" {ENTRY_POINT_GROUP} is not a ProviderPlugin named '{point.name}'"
            )
        found.append(plugin)
    return found
