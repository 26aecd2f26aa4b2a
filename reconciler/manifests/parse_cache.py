"""Parsed manifest files kept between runs, keyed by their bytes.

Parsing is the largest part of loading (10,000 documents: about 0.35 s of 0.9 s), and
between two runs almost every file is unchanged. This cache maps the sha256 of a file's
bytes (and whether it is read as JSON or YAML) to the documents built from them, as
plain data, so a hit is exact whatever the file's name, time or place, and a file that
changed is simply a miss, parsed as usual. Files that do not parse are never cached:
their errors are reported on every run. Positions are not cached either: `SourceMap`
re-reads a file with positions when something in it has to be reported.

It also remembers which pipeline specs pachyderm's schema accepted (by a digest of the
request), since checking one costs more than parsing it; a refused spec is never
remembered, so its errors are reported on every run.

Storage: one `reconciler.manifests.cachefile`, `documents.marshal` in the run cache of the
manifests root (in the user's cache folder, never inside the repository), holding the
entries the last run used (so it never grows beyond one folder's manifests), rewritten
only when a run parsed something new or left something unused.
"""

from __future__ import annotations

import hashlib
import marshal
from pathlib import Path
from typing import Any, TypeGuard

from reconciler.manifests import cachefile

FILE_NAME = "documents.marshal"
HEADER = cachefile.header("documents", 2)

Parsed = list[tuple[int, int, Any]]
"""A file's documents as (index, first line, data)."""


def key(raw: bytes, *, as_json: bool) -> bytes:
    return hashlib.sha256((b"json\0" if as_json else b"yaml\0") + raw).digest()


class Memo:
    """Keys of results known good (a pipeline spec pachd's schema accepted), as a set:
    membership marks a key as still in use, so `save` keeps only those."""

    def __init__(self, known: set[bytes]) -> None:
        self.known = known
        self.used: set[bytes] = set()

    def __contains__(self, key: object) -> bool:
        if key in self.known:
            self.used.add(key)
            return True
        return key in self.used

    def add(self, key: bytes) -> None:
        self.used.add(key)


class ParseCache:
    """The documents of files parsed before, and `accepted`, the pipeline specs found
    valid before; `save()` once the run has loaded."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        stored = cachefile.read(self.path, HEADER)
        documents, accepted = stored if _valid(stored) else ({}, set())
        self._known: dict[bytes, bytes] = documents
        self._used: dict[bytes, bytes] = {}
        self.accepted = Memo(accepted)

    def get(self, digest: bytes) -> Parsed | None:
        stored = self._known.get(digest)
        if stored is None:
            return None
        self._used[digest] = stored
        documents: Parsed = marshal.loads(stored)
        return documents

    def put(self, digest: bytes, documents: Parsed) -> None:
        # Serialised now: the loader goes on to change the documents' data in place.
        self._used[digest] = marshal.dumps(documents)

    def save(self) -> None:
        if self._used.keys() == self._known.keys() and self.accepted.used == self.accepted.known:
            return
        if cachefile.write(self.path, HEADER, (self._used, self.accepted.used)):
            self._known = dict(self._used)
            self.accepted = Memo(set(self.accepted.used))


def _valid(stored: Any) -> TypeGuard[tuple[dict[bytes, bytes], set[bytes]]]:
    return (
        isinstance(stored, tuple)
        and len(stored) == 2
        and isinstance(stored[0], dict)
        and isinstance(stored[1], set)
    )
