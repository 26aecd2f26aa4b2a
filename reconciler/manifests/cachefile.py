"""One file of a run's cache: read whole, written whole; and where caches live.

Caches live outside the source tree, in the user's cache folder (`$RECONCILER_CACHE`,
else `$XDG_CACHE_HOME/reconciler`, else `~/.cache/reconciler`), one folder per manifests
root: never in a folder the repository controls, since a committed cache file would
override what the YAML says (and marshal must never read bytes an author chose).

marshal, not JSON or pickle: it keeps plain data's types exactly (integer keys and
bytes included) and reads about ten times faster. Every file starts with a header
naming what it holds, its format, the reconciler version and the Python version, since
marshal's format and what is cached may differ across them; a file with another header,
or torn, or unreadable, reads as absent. Writes go to a scratch file renamed into place,
so a reader never sees half a file; a folder that cannot be written (a read-only
checkout) means no cache, never an error.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import __version__

CACHE_VARIABLE = "RECONCILER_CACHE"


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """The folder every reconciler cache lives under (git clones, run caches)."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_VARIABLE):
        return Path(env[CACHE_VARIABLE])
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "reconciler"


def run_cache(root: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Where runs over the manifests at `root` keep what the next run can reuse; None
    when that would be inside `root` itself (a cache folder set inside the repository):
    then nothing is cached."""
    real = Path(os.path.realpath(root))
    home = Path(os.path.realpath(cache_home(environ)))
    if home == real or real in home.parents:
        return None
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in real.name)[:40] or "root"
    return home / "runs" / f"{name}-{hashlib.sha256(str(real).encode()).hexdigest()[:16]}"


def header(kind: str, version: int) -> tuple[Any, ...]:
    return (kind, version, __version__, sys.version_info[:2])


def read(path: Path, expected: tuple[Any, ...]) -> Any | None:
    """What `write` stored under `expected`, or None."""
    try:
        with path.open("rb") as stored:
            found, value = marshal.load(stored)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return value if found == expected else None


def write(path: Path, expected: tuple[Any, ...], value: Any) -> bool:
    """Store `value` (plain data); False when the folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(handle, "wb") as out:
                marshal.dump((expected, value), out)
            Path(scratch).replace(path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


Stat = tuple[int, int, int, int]
"""What tells a file changed without reading it: size, modification and change times in
nanoseconds, inode (git's index keeps the same)."""

RACY_NS = 2_000_000_000
"""A file modified this close before a cache was written may change again within the same
clock tick without its stat changing (git's "racily clean" files): never trusted."""


def stat_of(path: Path) -> Stat:
    info = path.stat()
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def unchanged(now: Stat, recorded: Stat, written_ns: int) -> bool:
    """Whether a file whose stat was `recorded` in a cache written at `written_ns` still
    holds what it held then."""
    return now == recorded and now[1] < written_ns - RACY_NS
