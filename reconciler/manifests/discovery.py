"""Which files are manifests, and how files are named in messages."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import InputError, Problem
from reconciler.manifests.config import CONFIG_FILE
from reconciler.manifests.documents import Document

if TYPE_CHECKING:
    from reconciler.manifests.catalog import Catalog

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


Complaint = Callable[[int, str, str], None]
"""Reports a problem with the `manifests:` entry at an index: message, hint."""


def discover(
    root: Path, patterns: tuple[str, ...] | list[str], complain: Complaint | None = None
) -> list[Path]:
    """Manifest files below `root`: folders searched for YAML, or globs; hidden folders
    skipped. Every entry must name something inside `root`: an entry that matches
    nothing (a typo, a renamed folder) would otherwise plan "No changes" or, pruning,
    delete everything it used to hold; a symlink that leads outside would read files the
    repository does not hold; a symlinked folder is not followed, and said so."""
    found: set[Path] = set()
    real_root = Path(os.path.realpath(root))

    def problem(index: int, message: str, hint: str) -> None:
        if complain is None:
            raise InputError([Problem(CONFIG_FILE, message=message, hint=hint)])
        complain(index, message, hint)

    def outside(path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return not (real == real_root or real_root in real.parents)

    for index, pattern in enumerate(patterns):
        if Path(pattern).is_absolute() or pattern.startswith("~"):
            problem(
                index,
                f"manifests entry '{pattern}' is an absolute path",
                "write folders and globs relative to reconciler.yaml",
            )
            continue
        candidate = root / pattern
        matched: list[Path] = []
        if any(ch in pattern for ch in "*?["):
            try:
                matched = [m for m in root.glob(pattern) if m.is_file()]
            except ValueError as exc:  # a malformed pattern ('**' inside a name, ...)
                problem(index, f"manifests entry '{pattern}' is not a usable glob: {exc}", "")
                continue
            matched = [m for m in matched if not _hidden(m.relative_to(root))]
        elif candidate.is_file():
            matched = [candidate]
        elif candidate.is_dir():
            if outside(candidate):
                problem(
                    index,
                    f"manifests entry '{pattern}' leads outside the manifests folder",
                    "name a folder inside the repository",
                )
                continue
            matched = _walk(candidate, root, functools.partial(problem, index))
        else:
            problem(
                index,
                f"manifests entry '{pattern}' names no file or folder",
                "fix the path (relative to reconciler.yaml), or remove the entry",
            )
            continue
        for file in matched:
            if outside(file):
                problem(
                    index,
                    f"{file.relative_to(root)} is a symlink to a file outside the manifests folder",
                    "keep manifests inside the repository; replace the link by the file",
                )
            elif not file.is_file():  # through a link inside: what it leads to
                problem(
                    index,
                    f"{file.relative_to(root)} is not a regular file (a FIFO, socket or"
                    " device, or a link that leads to no file)",
                    "remove it, or replace it by the manifest file",
                )
            else:
                found.add(file)
    config = root / CONFIG_FILE
    return sorted(f for f in found if f != config)


def _walk(folder: Path, root: Path, problem: Callable[[str, str], None]) -> list[Path]:
    files = []
    for current, dirs, names in os.walk(folder):
        kept = []
        for name in sorted(dirs):
            if name.startswith("."):
                continue
            if Path(current, name).is_symlink():
                link = Path(current, name).relative_to(root)
                problem(
                    f"{link} is a symlinked folder, which reconciler does not follow",
                    "list the folder it leads to in `manifests:`, or replace the link by"
                    " the folder",
                )
                continue
            kept.append(name)
        dirs[:] = kept
        for name in names:
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                files.append(Path(current) / name)
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in relative.parts)


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def content_folders(
    parsed: list[tuple[Path, str, list[Document] | InputError]], catalog: Catalog
) -> list[Path]:
    """Folders that manifests name as their content (a Package's `source`, see
    `KindInfo.content_field`): the files inside are content, not manifests."""
    fields = {
        (info.api_version, info.kind): info.content_field
        for info in catalog.kinds.values()
        if info.content_field is not None
    }
    folders: list[Path] = []
    for file, _, result in parsed:
        if isinstance(result, InputError):
            continue
        for document in result:
            data = document.data
            if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
                continue
            name = fields.get((data.get("apiVersion"), data.get("kind")))  # type: ignore[arg-type]
            if name is not None and isinstance(data["spec"].get(name), str):
                try:  # realpath: a link loop stays a path (resolve raises on one)
                    folders.append(Path(os.path.realpath(file.parent / data["spec"][name])))
                except ValueError:  # a NUL in the path: the kind's validation says so
                    continue
    return folders
