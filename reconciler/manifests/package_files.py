"""The files of a kdb Insights package folder: what its artifact holds, in a fixed order.

`.kxignore` works like `.gitignore`, the subset packages use: one pattern a line, `#`
comments, a pattern without `/` matches a file or folder name at any depth, one with a
`/` matches the path from the package's top, a trailing `/` matches folders only, `!`
takes a path back in, and the last matching line wins. Symbolic links are refused: what
they point at differs between machines, so the artifact would too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

IGNORE_FILE = ".kxignore"


class PackageFileError(Exception):
    """A package folder that cannot become an artifact (a symbolic link inside it)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class _Pattern:
    glob: str
    anchored: bool
    folders_only: bool
    negated: bool

    def matches(self, relative: PurePosixPath, is_dir: bool) -> bool:
        if self.folders_only and not is_dir:
            return False
        if self.anchored:
            return fnmatchcase(str(relative), self.glob)
        return fnmatchcase(relative.name, self.glob)


def _patterns(folder: Path) -> list[_Pattern]:
    file = folder / IGNORE_FILE
    if not file.is_file():
        return []
    patterns = []
    for raw in file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!")
        folders_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        patterns.append(_Pattern(line.lstrip("/"), anchored, folders_only, negated))
    return patterns


def _ignored(patterns: list[_Pattern], relative: PurePosixPath, is_dir: bool) -> bool:
    verdict = False
    for pattern in patterns:
        if pattern.matches(relative, is_dir):
            verdict = not pattern.negated
    return verdict


def package_files(folder: Path) -> list[tuple[str, Path]]:
    """(path inside the package with `/` separators, real file), sorted by path; raises
    `PackageFileError` for a symbolic link that `.kxignore` does not leave out."""
    patterns = _patterns(folder)
    found: list[tuple[str, Path]] = []
    # Plain strings and scandir's cached types, not Path objects and a stat per file: every
    # plan lists every package folder twice (validation, artifact identity).
    pending = [(str(folder), "")]
    while pending:
        directory, base = pending.pop()
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            relative = f"{base}/{entry.name}" if base else entry.name
            is_dir = entry.is_dir()
            if patterns and _ignored(patterns, PurePosixPath(relative), is_dir=is_dir):
                continue
            if entry.is_symlink():
                raise _link(folder, PurePosixPath(relative))
            if is_dir:
                pending.append((entry.path, relative))
            else:
                found.append((relative, Path(entry.path)))
    found.sort(key=lambda item: item[0])
    return found


def _link(folder: Path, relative: PurePosixPath) -> PackageFileError:
    return PackageFileError(
        f"{folder.name}/{relative} is a symbolic link",
        "replace it with the file or folder itself, or list it in .kxignore:"
        " an artifact must be the same on every machine",
    )
