"""The files of a kdb Insights package folder: what its artifact holds, in a fixed order.

`.kxignore` works exactly like `.gitignore` (pathspec's git semantics: `*` stays within
a folder, `**` spans any number of them, a pattern with a `/` is anchored at the
package's top, a trailing `/` matches folders only, `!` takes a path back in unless a
folder above it is excluded, the last matching line wins), so an artifact holds what git
would hold. Symbolic links are refused: what they point at differs between machines, so
the artifact would too.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

import pathspec

from reconciler.errors import BadValue

IGNORE_FILE = ".kxignore"


class PackageFileError(BadValue):
    """A package folder that cannot become an artifact (a symbolic link, FIFO, socket or
    device inside it)."""


def _spec(folder: Path) -> pathspec.GitIgnoreSpec | None:
    file = folder / IGNORE_FILE
    try:
        info = file.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        # Read through a link, a manifests repository would choose a file of the runner
        # to read (its lines then steer what the artifact holds, its errors show them).
        raise PackageFileError(
            f"{folder.name}/{IGNORE_FILE} is a symbolic link",
            "replace it with the file itself: the ignore file is read only from inside"
            " the package folder",
        )
    if not stat.S_ISREG(info.st_mode):
        return None  # as git: a folder named like the ignore file is no ignore file
    try:
        lines = file.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise PackageFileError(
            f"{folder.name}/{IGNORE_FILE} is not UTF-8 text",
            "write it as text: one gitignore pattern a line",
        ) from None
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, re.error):
        raise _unreadable(folder, lines) from None


def _unreadable(folder: Path, lines: list[str]) -> PackageFileError:
    """The first line of an ignore file that pathspec cannot read as a pattern."""
    for number, line in enumerate(lines, 1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, re.error) as exc:
            return PackageFileError(
                f"{folder.name}/{IGNORE_FILE}:{number}: '{line}' is not a gitignore"
                f" pattern ({exc})",
                "fix or remove that line",
            )
    return PackageFileError(
        f"{folder.name}/{IGNORE_FILE} is not a list of gitignore patterns",
        "write one gitignore pattern a line",
    )


def package_files(folder: Path) -> list[tuple[str, Path]]:
    """(path inside the package with `/` separators, real file), sorted by path; raises
    `PackageFileError` for a symbolic link, FIFO, socket or device that `.kxignore` does
    not leave out."""
    spec = _spec(folder)
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
            # A folder is asked about with its trailing '/', as git does; an excluded
            # folder is not entered, so nothing below it can be taken back in.
            if spec is not None and spec.match_file(f"{relative}/" if is_dir else relative):
                continue
            if entry.is_symlink():
                raise _link(folder, PurePosixPath(relative))
            if is_dir:
                pending.append((entry.path, relative))
            elif entry.is_file(follow_symlinks=False):
                found.append((relative, Path(entry.path)))
            else:
                # A FIFO would block the read for ever; git keeps none of these either.
                raise PackageFileError(
                    f"{folder.name}/{relative} is not a regular file (a FIFO, socket or device)",
                    "remove it, or list it in .kxignore: an artifact holds files and folders only",
                )
    found.sort(key=lambda item: item[0])
    return found


def _link(folder: Path, relative: PurePosixPath) -> PackageFileError:
    return PackageFileError(
        f"{folder.name}/{relative} is a symbolic link",
        "replace it with the file or folder itself, or list it in .kxignore:"
        " an artifact must be the same on every machine",
    )
