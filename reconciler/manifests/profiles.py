"""reconciler.yaml read and validated, and a profile applied to it (see config.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.errors import InputError
from reconciler.manifests.catalog import Catalog
from reconciler.manifests.config import (
    CONFIG_FILE,
    Config,
    Files,
    Profile,
    Settings,
    TargetConfig,
    profile_chain,
)
from reconciler.manifests.discovery import display_name
from reconciler.manifests.documents import read_documents
from reconciler.manifests.merge import merge
from reconciler.manifests.reporting import Reporter, did_you_mean
from reconciler.manifests.values import FileAccess, Resolver, resolve_tree


def load_settings(
    root: Path,
    config_file: Path | None,
    profile: str | None,
    env: Mapping[str, str] | None,
    catalog: Catalog,
    report: Reporter,
) -> Settings | None:
    """The settings in force, or None with the problems in `report`."""
    model = catalog.config_model
    if config_file is None:
        config = model()
        raw: dict[str, Any] = {}
        display = CONFIG_FILE
    else:
        display = display_name(config_file, root)
        try:
            documents = read_documents(config_file, display)
        except InputError as exc:
            report.problems.extend(exc.problems)
            return None
        if len(documents) != 1 or not isinstance(documents[0].data, dict):
            report.file(
                display, "reconciler.yaml must hold one mapping", "see README: Configuration"
            )
            return None
        raw = documents[0].data
        resolver = Resolver(base=root, env=env, defer=True, files=_files(raw, root))
        for path, failure in resolve_tree(raw, resolver):
            report.at(display, config_file, 0, path, failure.message, failure.hint)
        try:
            config = model.model_validate(raw)
        except ValidationError as exc:
            report.validation(display, config_file, 0, (), model, raw, exc)
            return None

    if profile is None:
        return Settings(
            manifests=tuple(config.manifests),
            state=config.state,
            prune=config.prune,
            targets=dict(config.targets),
            select=(),
            patches=(),
            profile=None,
            files=config.files.access(root),
            notifications=config.notifications,
        )
    settings = _apply_profile(config, model, raw, profile, display, config_file, report)
    if settings is None:
        return None
    return replace(settings, files=config.files.access(root), notifications=config.notifications)


def _files(raw: dict[str, Any], root: Path) -> FileAccess:
    """The file policy of the configuration itself, read before it is validated (its
    own references need it); a malformed `files` is reported by validation."""
    try:
        return Files.model_validate(raw.get("files") or {}).access(root)
    except ValidationError:
        return FileAccess(root)


def _apply_profile(
    config: Config,
    model: type[Config],
    raw: dict[str, Any],
    name: str,
    display: str,
    config_file: Path | None,
    report: Reporter,
) -> Settings | None:
    profiles = config.profiles
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none are defined"
        report.file(
            display,
            f"no profile named '{name}'{did_you_mean(name, profiles)}",
            f"profiles in {CONFIG_FILE}: {known}",
        )
        return None
    real = config_file or Path(display)
    for profile_name, profile in profiles.items():
        for index, parent in enumerate(profile.extends):
            if parent not in profiles:
                report.at(
                    display,
                    real,
                    0,
                    ("profiles", profile_name, "extends", index),
                    f"profile '{profile_name}' extends '{parent}', which is not defined"
                    f"{did_you_mean(parent, profiles)}",
                )
    chain = profile_chain(profiles, name)
    if chain and isinstance(chain[0], list):
        for cycle in chain:
            assert isinstance(cycle, list)
            report.at(
                display,
                real,
                0,
                ("profiles", cycle[0], "extends"),
                f"profiles extend each other in a cycle: {' -> '.join(cycle)}",
                "remove one of the 'extends' entries of this cycle",
            )
        return None
    if report.problems:
        return None
    order: list[Profile] = [profiles[p] for p in chain if isinstance(p, str)]
    targets_raw: dict[str, Any] = raw.get("targets") or {
        key: target.model_dump(mode="json", by_alias=True, context={"expressions": True})
        for key, target in config.targets.items()
    }
    select: list[str] | None = None
    prune, state = config.prune, config.state
    patches = []
    for profile in order:
        targets_raw = merge(targets_raw, profile.targets)
        if profile.select is not None:
            select = profile.select
        if profile.prune is not None:
            prune = profile.prune
        if profile.state is not None:
            state = profile.state
        patches.extend(profile.patches)
    try:
        targets: dict[str, TargetConfig] = model.model_validate({"targets": targets_raw}).targets
    except ValidationError as exc:
        report.validation(
            display,
            real,
            0,
            ("profiles", name),
            None,
            {"targets": targets_raw},
            exc,
            note=f" (with profile '{name}')",
        )
        return None
    return Settings(
        manifests=tuple(config.manifests),
        state=state,
        prune=prune,
        targets=dict(targets),
        select=tuple(select or ()),
        patches=tuple(patches),
        profile=name,
    )
