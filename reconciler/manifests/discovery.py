"""Which files are manifests, and how files are named in messages."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.errors import InputError
from reconciler.manifests.config import CONFIG_FILE
from reconciler.manifests.documents import Document

MANIFEST_SUFFIXES = (".yaml", ".yml")


def display_name(file: Path, root: Path) -> str:
    """How a file is named in messages: relative to the working folder where possible."""
    # String operations: this runs for every file of every run.
    cwd = os.getcwd()  # noqa: PTH109 (a str: Path objects cost more here)
    absolute = os.path.normpath(os.path.join(cwd, file))  # noqa: PTH118
    if absolute == cwd:
        return "."
    inside = cwd.rstrip(os.sep) + os.sep
    return absolute[len(inside) :] if absolute.startswith(inside) else absolute


def discover(root: Path, patterns: tuple[str, ...] | list[str]) -> list[Path]:
    """Manifest files below `root`: folders searched for YAML, or globs; hidden folders skipped."""
    found: set[Path] = set()
    for pattern in patterns:
        candidate = root / pattern
        if any(ch in pattern for ch in "*?["):
            for match in root.glob(pattern):
                if match.is_file() and not _hidden(match.relative_to(root)):
                    found.add(match)
        elif candidate.is_file():
            found.add(candidate)
        elif candidate.is_dir():
            for folder, dirs, names in os.walk(candidate):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in names:
                    if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                        found.add(Path(folder) / name)
    config = root / CONFIG_FILE
    return sorted(f for f in found if f != config)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in relative.parts)


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def package_source_dirs(parsed: list[tuple[Path, str, list[Document] | InputError]]) -> list[Path]:
    """Folders that Package manifests name as `source`: their files are not manifests."""
    sources: list[Path] = []
    for file, _, result in parsed:
        if isinstance(result, InputError):
            continue
        for document in result:
            data = document.data
            if (
                isinstance(data, dict)
                and data.get("kind") == "Package"
                and isinstance(data.get("spec"), dict)
                and isinstance(data["spec"].get("source"), str)
            ):
                sources.append((file.parent / data["spec"]["source"]).resolve())
    return sources
