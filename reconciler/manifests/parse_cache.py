"""Parsed manifest files kept between runs, keyed by their bytes.

Parsing is the largest part of loading (10,000 documents: about 0.35 s of 0.9 s), and
between two runs almost every file is unchanged. This cache maps the sha256 of a file's
bytes (and whether it is read as JSON or YAML) to the documents built from them, as
plain data, so a hit is exact whatever the file's name, time or place, and a file that
changed is simply a miss, parsed as usual. Files that do not parse are never cached:
their errors are reported on every run. Positions are not cached either: `SourceMap`
re-reads a file with positions when something in it has to be reported.

Storage: one `reconciler.manifests.cachefile`, `.reconciler/cache/documents.marshal`
beside the manifests, holding the entries the last run used (so it never grows beyond
one folder's manifests), rewritten only when a run parsed something new or left
something unused.
"""

from __future__ import annotations

import hashlib
import marshal
from pathlib import Path
from typing import Any

from reconciler.manifests import cachefile

FILE_NAME = "documents.marshal"
HEADER = cachefile.header("documents", 1)

Parsed = list[tuple[int, int, Any]]
"""A file's documents as (index, first line, data)."""


def key(raw: bytes, *, as_json: bool) -> bytes:
    return hashlib.sha256((b"json\0" if as_json else b"yaml\0") + raw).digest()


class ParseCache:
    """The documents of files parsed before; `save()` once the run has loaded."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        stored = cachefile.read(self.path, HEADER)
        self._known: dict[bytes, bytes] = stored if isinstance(stored, dict) else {}
        self._used: dict[bytes, bytes] = {}

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
        if self._used.keys() != self._known.keys() and cachefile.write(
            self.path, HEADER, self._used
        ):
            self._known = dict(self._used)
