"""A manifests folder (or file) to typed resources, or every problem in it.

Order of work: the configuration and profile; every manifest file read into documents;
package source folders found and their files set aside (package content, not
manifests); each document checked as an envelope, its variables resolved, the
profile's patches applied, its spec validated by its kind's model; package sources
checked; duplicate ids found. Problems from every step are collected and raised
together as one InputError. References between resources are checked by
`reconciler.graph`, which needs them all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.errors import InputError
from reconciler.manifests import cachefile
from reconciler.manifests.catalog import Catalog, Content, ContentRequest, KindInfo, installed
from reconciler.manifests.config import CONFIG_FILE, Settings
from reconciler.manifests.discovery import content_folders, discover, display_name, inside
from reconciler.manifests.documents import Document, read_documents
from reconciler.manifests.merge import merge
from reconciler.manifests.model import Model
from reconciler.manifests.parse_cache import ParseCache
from reconciler.manifests.profiles import load_settings
from reconciler.manifests.reporting import (
    ProblemAt,
    Reporter,
    data_path,
    did_you_mean,
    show_path,
)
from reconciler.manifests.resources import (
    Metadata,
    Origin,
    PathKey,
    Reference,
    Resource,
    ResourceId,
)
from reconciler.manifests.values import FileAccess, Resolver, resolve_tree

ENVELOPE_FIELDS = ("apiVersion", "kind", "metadata", "spec")


@dataclass(frozen=True)
class Manifests:
    """Everything one run was asked to manage."""

    root: Path
    config_file: Path | None
    settings: Settings
    resources: tuple[Resource, ...]
    files: tuple[str, ...]
    content: Mapping[ResourceId, Content]
    """The files each resource's content comes from, as its kind listed them while
    validating it (a package folder)."""
    catalog: Catalog = dataclasses.field(default_factory=installed)
    """The kinds and targets the manifests were loaded with."""


@dataclass(frozen=True)
class LoadOptions:
    profile: str | None = None
    env: Mapping[str, str] | None = None
    resolve_variables: bool = True
    cache: bool = False
    """Keep parsed files in the run cache for the next run (`cache_folder`,
    `reconciler.manifests.parse_cache`)."""
    catalog: Catalog | None = None
    """The provider plugins' kinds and targets; None: every installed plugin."""


def load(path: Path, options: LoadOptions | None = None) -> Manifests:
    """Load and validate; raises InputError with every problem found."""
    options = options or LoadOptions()
    catalog = options.catalog or installed()
    report = Reporter()
    path = Path(path)
    root, config_file, settings = _configuration(path, options, catalog, report)
    if path.is_file():
        files = [path]
    else:
        display = display_name(config_file, root) if config_file else CONFIG_FILE

        def complain(index: int, message: str, hint: str) -> None:
            if config_file is None:
                report.file(display, message, hint or None)
            else:
                where = ("manifests", index)
                report.at(display, config_file, 0, where, message, hint or None)

        files = discover(root, settings.manifests, complain)
    folder = cache_folder(root) if options.cache else None
    cache = ParseCache(folder) if folder is not None else None
    try:
        return _load(path, root, config_file, settings, files, options, catalog, report, cache)
    finally:
        if cache is not None:
            cache.save()


def load_configuration(path: Path, options: LoadOptions | None = None) -> tuple[Path, Settings]:
    """The manifests root and the settings in force, without reading any manifest: for
    commands that need only the targets and the state (`status`, `unlock`)."""
    options = options or LoadOptions()
    catalog = options.catalog or installed()
    root, _, settings = _configuration(Path(path), options, catalog, Reporter())
    return root, settings


def _configuration(
    path: Path, options: LoadOptions, catalog: Catalog, report: Reporter
) -> tuple[Path, Path | None, Settings]:
    """The root, reconciler.yaml (None without one) and the settings in force."""
    if not path.exists():
        report.file(str(path), "no such file or folder", "check the path given to reconciler")
        raise InputError(report.problems)
    root = path if path.is_dir() else path.parent
    config_path = root / CONFIG_FILE
    config_file = config_path if config_path.is_file() else None
    if config_file is None and os.path.lexists(config_path):
        # A FIFO, a folder, a link to nothing: read as "no configuration", the defaults
        # would stand in for what the repository meant to say.
        report.file(
            CONFIG_FILE,
            f"{CONFIG_FILE} is not a regular file (a folder, FIFO, socket or device, or a"
            " link that leads to no file)",
            "replace it by the configuration file",
        )
        raise InputError(report.problems)
    if config_file is not None and not inside(config_file.resolve(), root.resolve()):
        report.file(
            CONFIG_FILE,
            f"{CONFIG_FILE} is a symlink to a file outside the manifests folder",
            "keep the configuration in the repository: replace the link by the file",
        )
        raise InputError(report.problems)
    settings = load_settings(root, config_file, options.profile, options.env, catalog, report)
    if settings is None:
        raise InputError(report.problems)
    return root, config_file, settings


def cache_folder(root: Path) -> Path | None:
    """Where runs keep what they can reuse (parsed files, built artifacts): outside the
    source tree (`reconciler.manifests.cachefile.run_cache`); None: cache nothing."""
    return cachefile.run_cache(root)


def _load(
    path: Path,
    root: Path,
    config_file: Path | None,
    settings: Settings,
    files: list[Path],
    options: LoadOptions,
    catalog: Catalog,
    report: Reporter,
    cache: ParseCache | None,
) -> Manifests:
    parsed: list[tuple[Path, str, list[Document] | InputError]] = []
    for file in files:
        display = display_name(file, root)
        try:
            parsed.append((file, display, read_documents(file, display, cache)))
        except InputError as exc:
            parsed.append((file, display, exc))

    sources = set(content_folders(parsed, catalog))
    builder = _Builder(root, settings, options, catalog, report, cache)
    used_files: list[str] = []
    for file, display, result in parsed:
        if path.is_dir() and sources and _in_any(Path(os.path.realpath(file)), sources):
            continue
        used_files.append(display)
        if isinstance(result, InputError):
            report.problems.extend(result.problems)
            continue
        for document in result:
            builder.document(file, document)

    builder.check_duplicates()
    builder.check_clashes()
    builder.check_unique()
    if report.problems:
        raise InputError(report.problems)
    return Manifests(
        root=root,
        config_file=config_file,
        settings=settings,
        resources=tuple(builder.resources),
        files=tuple(used_files),
        content=builder.content,
        catalog=catalog,
    )


def _in_any(path: Path, folders: set[Path]) -> bool:
    """Whether `path` is one of `folders` or inside one: a walk up its parents, not a
    scan of every folder (thousands of packages each have one)."""
    return path in folders or any(parent in folders for parent in path.parents)


# --- documents to resources ----------------------------------------------------------


class _Doc:
    """One document being turned into a resource: where its problems are reported, and
    whether it has any."""

    def __init__(self, report: Reporter, file: Path, document: Document) -> None:
        self.report = report
        self.file = file
        self.display = document.file
        self.index = document.index
        self.line = document.line
        self.note = ""
        """Said after each spec problem: the profile's patches had been applied."""
        self.ok = True

    def problem(
        self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.report.at(
            self.display,
            self.file,
            self.index,
            path,
            message,
            hint,
            key=key,
            fallback_line=self.line,
        )

    def validation(self, path: PathKey, model: Any, raw: Any, exc: ValidationError) -> None:
        self.report.validation(
            self.display,
            self.file,
            self.index,
            path,
            model,
            raw,
            exc,
            fallback_line=self.line,
            note=self.note,
        )


class _Builder:
    def __init__(
        self,
        root: Path,
        settings: Settings,
        options: LoadOptions,
        catalog: Catalog,
        report: Reporter,
        cache: ParseCache | None,
    ) -> None:
        self.root = root.resolve()
        self.catalog = catalog
        self.cache = cache
        self.settings = settings
        self.options = options
        self.report = report
        self.resources: list[Resource] = []
        self.content: dict[ResourceId, Content] = {}

    def document(self, file: Path, document: Document) -> None:
        """One document to a resource, or every problem it has reported."""
        doc = _Doc(self.report, file, document)
        data = document.data
        if not isinstance(data, dict):
            what = "a list" if isinstance(data, list) else "a single value"
            doc.problem(
                (),
                f"a manifest must be a mapping (apiVersion, kind, metadata, spec), not {what}",
                "write one resource per document, separated by '---'",
            )
            return
        if not self._envelope(data, doc.problem):
            return
        info = self.catalog.kinds[(data["apiVersion"], data["kind"])]
        if document.references and not self._resolved(doc, data):
            return
        if self.settings.patches and isinstance(data.get("metadata"), dict):
            data, applied = self._patch(data, info)
            if applied:
                doc.note = f" (after the patches of profile '{self.settings.profile}')"
        metadata = self._metadata(doc, data.get("metadata"))
        spec_raw = data.get("spec")
        if spec_raw is None and not info.spec_required:
            spec_raw = {}
        if self._reserved(doc, info, spec_raw):
            return
        spec = self._spec(doc, info, spec_raw)
        if metadata is None:
            self._rules_without_metadata(info, spec, spec_raw, data.get("metadata"), doc)
            return
        target, project, extra = self._placement(doc, info, metadata)
        if spec is None:
            return
        if self._rules(doc, info, spec, spec_raw, project, metadata.name) and doc.ok:
            self._add(doc, info, metadata, spec, target, project, extra)

    def _resolved(self, doc: _Doc, data: dict[str, Any]) -> bool:
        """`${env:...}` and `${file:...}` resolved in place; False when one cannot be."""
        resolver = Resolver(
            base=doc.file.parent,
            files=self.settings.files or FileAccess(self.root),
            env=self.options.env,
            check_only=not self.options.resolve_variables,
        )
        failed = False
        for path, exc in resolve_tree(data, resolver):
            doc.problem(path, exc.message, exc.hint)
            failed = True
        return not failed

    def _metadata(self, doc: _Doc, raw: Any) -> Metadata | None:
        try:
            return Metadata.model_validate(raw)
        except ValidationError as exc:
            # Reported, and the spec is still checked: every problem of a document at once.
            doc.validation(("metadata",), Metadata, raw, exc)
            return None

    def _reserved(self, doc: _Doc, info: KindInfo, spec_raw: Any) -> bool:
        for field, why in info.reserved.items():
            if isinstance(spec_raw, dict) and field in spec_raw:
                doc.problem(
                    ("spec", field),
                    f"spec.{field} cannot be set in a manifest: {why}",
                    f"remove spec.{field}",
                    key=True,
                )
                return True
        return False

    def _spec(self, doc: _Doc, info: KindInfo, spec_raw: Any) -> Model | None:
        try:
            return info.spec_model.model_validate(spec_raw)
        except ValidationError as exc:
            doc.validation(("spec",), info.spec_model, spec_raw, exc)
            doc.ok = False
            return None

    def _placement(
        self, doc: _Doc, info: KindInfo, metadata: Metadata
    ) -> tuple[str, str | None, list[Reference]]:
        """The resource's target, scope and `dependsOn` references, each checked (what
        is wrong is reported, and the document is no longer ok)."""
        kind = info.kind
        reason = info.check_name(metadata.name)
        if reason:
            doc.problem(("metadata", "name"), f"metadata.name: {reason}")
            doc.ok = False
        project: str | None = None
        scope = self.catalog.scope_info(info)
        if info.scope is not None:
            project = metadata.project or info.scope.default
            reason = scope.check_name(project) if scope is not None else None
            if reason:
                doc.problem(("metadata", "project"), f"metadata.project: {reason}")
                doc.ok = False
        elif metadata.project is not None:
            doc.problem(
                ("metadata", "project"),
                f"metadata.project does not apply to a {kind}",
                f"remove metadata.project: a {kind} is not inside another resource",
                key=True,
            )
            doc.ok = False
        target = metadata.target or info.provider
        self._check_target(doc, info, metadata, target)
        extra = []
        for position, entry in enumerate(metadata.depends_on):
            reference = self.catalog.depends_on_reference(
                entry, position, target=target, provider=info.provider, scope=project
            )
            if reference is None:
                doc.problem(
                    ("metadata", "dependsOn", position),
                    f"'{entry}' is not a resource id",
                    "write <target>:<Kind>/<name>; `reconciler validate --format json` lists"
                    " every id",
                )
                doc.ok = False
            else:
                extra.append(reference)
        return target, project, extra

    def _check_target(self, doc: _Doc, info: KindInfo, metadata: Metadata, target: str) -> None:
        where: PathKey = ("metadata", "target") if metadata.target else ("kind",)
        target_config = self.settings.targets.get(target)
        if target_config is None:
            doc.problem(
                where,
                f"no target named '{target}'{did_you_mean(target, self.settings.targets)}",
                f"add a target '{target}' with provider '{info.provider}' to {CONFIG_FILE}"
                + ("" if metadata.target else ", or set metadata.target"),
            )
            doc.ok = False
        elif target_config.provider != info.provider:
            doc.problem(
                where,
                f"target '{target}' is a {target_config.provider} target; a {info.kind} needs"
                f" a {info.provider} target",
                "set metadata.target to a target of the right provider",
            )
            doc.ok = False

    def _rules(
        self,
        doc: _Doc,
        info: KindInfo,
        spec: Model,
        spec_raw: Any,
        project: str | None,
        name: str,
    ) -> bool:
        """The platform's own rules for the spec; False when one is broken (reported)."""
        if info.rules is None:
            return True
        accepted = self.cache.accepted if self.cache is not None else None
        broken = False
        for path, message, hint in info.rules(spec, project, name, accepted):
            at: PathKey = ("spec", *data_path(spec_raw, path))
            doc.problem(at, f"{show_path(at)}: {message}{doc.note}", hint)
            broken = True
        return not broken

    def _add(
        self,
        doc: _Doc,
        info: KindInfo,
        metadata: Metadata,
        spec: Model,
        target: str,
        project: str | None,
        extra: list[Reference],
    ) -> None:
        name = f"{project}/{metadata.name}" if info.scope is not None else metadata.name
        if info.identity is not None:
            name = str(getattr(spec, info.identity))
        origin = Origin(doc.display, doc.file, doc.index, doc.line)
        references = (*info.references(spec, project, metadata.name), *extra)
        resource = Resource(
            ResourceId(target, info.kind, name),
            info.api_version,
            metadata,
            spec,
            origin,
            project,
            references,
        )
        if info.content is not None:
            content = info.content(
                ContentRequest(resource, doc.file, self.root, doc.problem, self.report, self.cache)
            )
            if content is not None:
                self.content[resource.id] = content
        self.resources.append(resource)

    def _rules_without_metadata(
        self,
        info: KindInfo,
        spec: Model | None,
        spec_raw: Any,
        metadata_raw: Any,
        doc: _Doc,
    ) -> None:
        """The kind's own rules for a document whose metadata is invalid, with the name
        and project as written where they are text."""
        raw = metadata_raw if isinstance(metadata_raw, dict) else {}
        name, project = raw.get("name"), raw.get("project")
        if spec is None or info.rules is None or not isinstance(name, str):
            return
        if info.scope is not None:
            project = project if isinstance(project, str) else info.scope.default
        else:
            project = None
        self._rules(doc, info, spec, spec_raw, project, name)

    def _envelope(self, data: dict[str, Any], problem: ProblemAt) -> bool:
        ok = True
        for key in data:
            if key not in ENVELOPE_FIELDS:
                problem(
                    (key,),
                    f"unknown top-level field '{key}'{did_you_mean(str(key), ENVELOPE_FIELDS)}",
                    "a manifest has apiVersion, kind, metadata and spec;"
                    " kind-specific fields go under spec",
                    key=True,
                )
                ok = False
        api_version, kind = data.get("apiVersion"), data.get("kind")
        if api_version is None and kind is None:
            hint = "start the document with apiVersion and kind"
            for info in self.catalog.kinds.values():
                if info.bare is not None and all(f in data for f in info.bare.fields):
                    hint = (
                        f"this is a bare {info.bare.what}: wrap it as apiVersion:"
                        f" {info.api_version}, kind: {info.kind}, metadata: {{name: ...}},"
                        f" spec: {{the spec without '{info.bare.drop}'}}"
                    )
                    break
            else:
                example = next(iter(self.catalog.kinds.values()), None)
                if example is not None:
                    hint += f", e.g. apiVersion: {example.api_version}, kind: {example.kind}"
            problem((), "not a manifest: apiVersion and kind are missing", hint)
            return False
        if not isinstance(api_version, str):
            problem(
                ("apiVersion",) if "apiVersion" in data else (),
                "apiVersion is missing or not text",
                f"use one of: {', '.join(self.catalog.api_versions)}",
            )
            return False
        if api_version not in self.catalog.api_versions:
            problem(
                ("apiVersion",),
                f"unknown apiVersion '{api_version}'"
                + did_you_mean(api_version, self.catalog.api_versions),
                f"use one of: {', '.join(self.catalog.api_versions)}",
            )
            return False
        if not isinstance(kind, str):
            problem(
                ("kind",) if "kind" in data else (),
                "kind is missing or not text",
                f"{api_version} kinds: {', '.join(self.catalog.kinds_of(api_version))}",
            )
            return False
        if (api_version, kind) not in self.catalog.kinds:
            elsewhere = [info.api_version for info in self.catalog.find(kind)]
            hint = (
                f"{kind} is a {elsewhere[0]} kind: set apiVersion: {elsewhere[0]}"
                if elsewhere
                else f"{api_version} kinds: {', '.join(self.catalog.kinds_of(api_version))}"
            )
            problem(
                ("kind",),
                f"unknown kind '{kind}' for {api_version}"
                + (did_you_mean(kind, self.catalog.kinds_of(api_version)) if not elsewhere else ""),
                hint,
            )
            return False
        if "metadata" not in data:
            problem((), "missing metadata", "add metadata: {name: ...}")
            return False
        info = self.catalog.kinds[(api_version, kind)]
        if info.spec_required and "spec" not in data:
            problem((), "missing spec", f"add the {kind}'s spec")
            return False
        return ok

    def _patch(self, data: dict[str, Any], info: KindInfo) -> tuple[dict[str, Any], bool]:
        metadata = data.get("metadata") or {}
        name = metadata.get("name")
        labels = metadata.get("labels") or {}
        if not isinstance(name, str) or not isinstance(labels, dict):
            return data, False
        target = metadata.get("target") or info.provider
        project = (metadata.get("project") or info.scope.default) if info.scope else None
        applied = False
        for rule in self.settings.patches:
            if rule.match.matches(info.api_version, info.kind, name, str(target), project, labels):
                data = merge(data, rule.patch)
                applied = True
        return data, applied

    def check_unique(self) -> None:
        """Resources of a kind that must differ in a spec field, and do not."""
        first: dict[tuple[str, str, str, object], Resource] = {}
        for resource in self.resources:
            info = self.catalog.kinds.get((resource.api_version, resource.kind))
            if info is None or info.identity is None:
                continue
            value = getattr(resource.spec, info.identity, None)
            key = (resource.target, resource.api_version, resource.kind, value)
            other = first.setdefault(key, resource)
            if other is resource:
                continue
            self._at(
                resource,
                ("spec", info.identity),
                f"{resource.kind} '{resource.name}' has the {info.identity} '{value}' of"
                f" {other.kind} '{other.name}' (at {other.origin}): one per target",
                "keep one of the two manifests",
            )

    def _at(self, resource: Resource, path: PathKey, message: str, hint: str) -> None:
        """A problem at `path` of a resource already built."""
        origin = resource.origin
        self.report.at(
            origin.file, origin.path, origin.index, path, message, hint, fallback_line=origin.line
        )

    def check_clashes(self) -> None:
        """Resources the platform would make itself from another in the manifests."""
        by_id = {resource.id: resource for resource in self.resources}
        for resource in self.resources:
            info = self.catalog.kinds.get((resource.api_version, resource.kind))
            for clash in info.clashes if info is not None else ():
                other = by_id.get(ResourceId(resource.target, clash.kind, resource.id.name))
                if other is None:
                    continue
                self._at(
                    resource,
                    ("metadata", "name"),
                    clash.message.format(name=resource.id.name),
                    clash.hint.format(other=other.origin),
                )

    def check_duplicates(self) -> None:
        first: dict[ResourceId, Resource] = {}
        for resource in self.resources:
            seen = first.get(resource.id)
            if seen is None:
                first[resource.id] = resource
                continue
            info = self.catalog.kinds.get((resource.api_version, resource.kind))
            if info is not None and info.identity is not None:
                continue  # check_unique says it in the kind's own words
            for this, other in ((resource, seen), (seen, resource)):
                self.report.at(
                    this.origin.file,
                    this.origin.path,
                    this.origin.index,
                    ("metadata", "name"),
                    f"duplicate resource {resource.id}: also defined at {other.origin}",
                    "rename one of them, or delete the copy",
                    fallback_line=this.origin.line,
                )
