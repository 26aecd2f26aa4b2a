"""What building artifacts found, kept between runs so unchanged folders are not read.

An artifact's identity is the hash of its source tree, which takes reading and hashing
every file of the package folder: hundreds of folders in a large repository, read on
every plan although they rarely change. Like git's index, this remembers each file's
sha256 beside the stat it had when hashed (size, modification and change times, inode):
a file whose stat is the same is not read again. A file modified within two seconds
before the index was written is not trusted (git's "racily clean" files: a change in the
same clock tick would leave the stat unchanged) and is hashed again. Per source tree, it
also remembers what the build learnt from the files: name, version, the archive's
sha256, the components and which files each loads. The archive itself stays in the
build cache; when it has been evicted, the folder is built again in full.

Stored per target as `builds-<target>.marshal` in the run cache (outside the source tree)
(`reconciler.manifests.cachefile`), keeping only what the target's last run used, and
written when the provider closes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from reconciler.manifests import cachefile

HEADER = cachefile.header("builds", 1)


@dataclass(frozen=True, slots=True)
class Built:
    """What one source tree's build found."""

    name: str
    version: str
    sha256: str
    loaded_by: dict[str, tuple[str, ...]]
    components: tuple[str, ...]


def file_sha256(path: Path) -> str:
    """A file's digest, read in chunks: a large data file in a package folder is hashed
    without being held in memory."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class BuildIndex:
    def __init__(self, folder: Path, target: str) -> None:
        self.path = folder / f"builds-{target}.marshal"
        stored = cachefile.read(self.path, HEADER)
        files, trees, written = stored if _valid(stored) else ({}, {}, 0)
        self._files: dict[str, tuple[cachefile.Stat, str]] = files
        self._trees: dict[str, tuple[Any, ...]] = trees
        self._written = written
        self._used_files: dict[str, tuple[cachefile.Stat, str]] = {}
        self._used_trees: dict[str, tuple[Any, ...]] = {}
        self._changed = False

    def sha256(self, path: Path) -> str:
        """The file's content digest, read only when its stat is not the one recorded."""
        key = str(path)
        stat = cachefile.stat_of(path)
        known = self._files.get(key)
        if known is not None and cachefile.unchanged(stat, known[0], self._written):
            self._used_files[key] = known
            return known[1]
        sha = file_sha256(path)
        self._used_files[key] = (stat, sha)
        self._changed = True
        return sha

    def built(self, tree: str) -> Built | None:
        known = self._trees.get(tree)
        if known is None:
            return None
        self._used_trees[tree] = known
        name, version, sha, loaded_by, components = known
        return Built(name, version, sha, dict(loaded_by), tuple(components))

    def remember(self, tree: str, built: Built) -> None:
        self._used_trees[tree] = (
            built.name,
            built.version,
            built.sha256,
            built.loaded_by,
            built.components,
        )
        self._changed = True

    def save(self) -> None:
        unused = self._used_files.keys() != self._files.keys()
        if not (self._changed or unused or self._used_trees.keys() != self._trees.keys()):
            return
        written = time.time_ns()
        if cachefile.write(self.path, HEADER, (self._used_files, self._used_trees, written)):
            self._files, self._trees = dict(self._used_files), dict(self._used_trees)
            self._written = written
            self._changed = False


def _valid(stored: Any) -> TypeGuard[tuple[dict[str, Any], dict[str, Any], int]]:
    return (
        isinstance(stored, tuple)
        and len(stored) == 3
        and isinstance(stored[0], dict)
        and isinstance(stored[1], dict)
        and isinstance(stored[2], int)
    )
