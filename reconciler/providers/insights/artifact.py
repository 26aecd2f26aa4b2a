"""Package artifacts: a `.kxi` built from a package folder, and the package's identity.

The archive is what KX's `kxi package packit` makes: a compressed (deflate) zip of the
package folder with its layout, `manifest.yaml` at the top, holding the files
`reconciler.providers.insights.package_files` lists (sorted, `.kxignore` read with git's
semantics, symbolic links refused), each entry with the same fixed time and mode.
Compressed bytes may differ between zlib builds, so the package's identity is not the
archive's digest: it is the content digest, over each included file's path and bytes
(`content_digest`), the same on every machine whatever the files' times and modes. It
is kept in the state store once applied and compared there; no server is asked to echo
it (KX documents no such field). A build is kept under the cache folder by that digest,
so an unchanged folder is never archived again.

Each file is also mapped to the components that load it, through `manifest.yaml`: a
pipeline's file and the spec file it names (`spec: file://src/x.json`), a database's
folder and its tables (every table when its list is empty), a view's file. Anything else
(the manifest itself, the router, a shared source file) concerns every component.
"""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import os
import posixpath
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import InputError, Problem
from reconciler.manifests.documents import parse_documents
from reconciler.providers.insights.build_index import BuildIndex, Built, file_sha256
from reconciler.providers.insights.package_files import PackageFileError, package_files

FORMAT = "kxi-zip/1"
"""Part of the cache key: a change to how archives are made invalidates every build."""
EPOCH = (1980, 1, 1, 0, 0, 0)
"""The time every entry carries (the earliest a zip can hold, as reproducible builds do)."""
FILE_MODE = 0o644
KEEP = 4
"""Builds kept per package name in the cache."""
CONTENT_PREFIX = "files/"
"""Fingerprint keys of package files: `files/pipelines/equities-rt.yaml`."""


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    version: str
    path: Path
    sha256: str
    """Of the archive's bytes: which build this is (the cache checks it)."""
    files: Mapping[str, str]
    """Path inside the package to the sha256 of its content."""
    loaded_by: Mapping[str, tuple[str, ...]]
    """Path inside the package to the components that load it (`pipeline:equities-rt`)."""
    components: tuple[str, ...]
    """Every component the manifest defines, as `type:name`."""

    @property
    def content(self) -> str:
        """The package's identity: the content digest of its files (`content_digest`)."""
        return content_digest(self.files)

    @property
    def fingerprints(self) -> dict[str, str]:
        return {CONTENT_PREFIX + path: sha for path, sha in self.files.items()}

    def loaded_by_key(self) -> dict[str, tuple[str, ...]]:
        return {CONTENT_PREFIX + path: parts for path, parts in self.loaded_by.items()}

    def read(self) -> bytes:
        return self.path.read_bytes()

    def package_object(self) -> dict[str, Any]:
        """The Package object KX's client sends to register or validate a package
        (client.packages.create / validate): its manifest, and the definition of each
        table, database, pipeline and view, read from the package's own files."""
        contents = _rooted(unpack(self.read()))
        manifest = _manifest(contents.get("manifest.yaml"), str(self.path))
        body: dict[str, Any] = {"name": self.name, "version": self.version, "manifest": manifest}
        for section in ("tables", "databases", "pipelines", "views"):
            entries = _entries(manifest.get(section))
            if not entries:
                continue
            definitions: dict[str, Any] = {}
            for name, entry in entries.items():
                file = str(entry.get("file") or "")
                definition = _yaml(contents.get(posixpath.normpath(file))) if file else None
                definitions[name] = definition if isinstance(definition, dict) else dict(entry)
            body[section] = definitions
        safe: dict[str, Any] = _json_safe(body)
        return safe


def build(
    folder: Path,
    cache: Path,
    label: str,
    index: BuildIndex | None = None,
    listed: list[tuple[str, Path]] | None = None,
) -> Artifact:
    """The artifact of a package folder, from the cache when the folder is unchanged.
    `label` names the folder in messages. With an `index`, files whose stat is unchanged
    are not read, and an unchanged tree whose archive is in the cache is not either.
    `listed`: the folder's files as validation listed them moments ago."""
    if listed is None:
        try:
            listed = package_files(folder)
        except PackageFileError as exc:
            raise InputError([Problem(label, message=str(exc), hint=exc.hint)]) from None
    if index is not None:
        files = {relative: index.sha256(path) for relative, path in listed}
    else:
        files = {relative: file_sha256(path) for relative, path in listed}
    tree = hashlib.sha256(f"{FORMAT}\n{content_digest(files)}".encode()).hexdigest()
    known = index.built(tree) if index is not None else None
    if known is not None:
        target = cache / f"{known.name}@{known.version}@{tree[:32]}.kxi"
        # The archive must still be the one built from this tree: a cache file replaced
        # by anyone else is built again, never pushed.
        if target.is_file() and _sha256(target.read_bytes()) == known.sha256:
            os.utime(target)  # recently used: kept by _evict
            return Artifact(
                known.name,
                known.version,
                target,
                known.sha256,
                files,
                known.loaded_by,
                known.components,
            )
    size = sum(path.stat().st_size for _, path in listed)
    if size > UNPACKED_MAX:
        raise InputError(
            [
                Problem(
                    label,
                    message=f"the package's files come to {size:,} bytes, more than the"
                    f" {UNPACKED_MAX >> 20:,} MiB a package may hold",
                    hint="leave large data files out with .kxignore: a package holds code"
                    " and configuration",
                )
            ]
        )
    contents = {relative: path.read_bytes() for relative, path in listed}
    manifest = _manifest(contents.get("manifest.yaml"), label)
    name, version = str(manifest.get("name")), str(manifest.get("version"))
    target = cache / f"{name}@{version}@{tree[:32]}.kxi"
    made = archive(contents.items())
    if target.is_file() and target.read_bytes() == made:
        os.utime(target)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, made)
        _evict(cache, f"{name}@", target)
    sha = _sha256(made)
    loaded_by, components = _components(manifest, contents)
    if index is not None:
        index.remember(tree, Built(name, version, sha, loaded_by, components))
    return Artifact(name, version, target, sha, files, loaded_by, components)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _evict(cache: Path, prefix: str, current: Path) -> None:
    """Keep the most recently used builds of a package (the current one first), drop the
    rest."""
    others = [p for p in cache.glob(f"{prefix}*.kxi") if p != current]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[KEEP - 1 :]:
        stale.unlink(missing_ok=True)


def content_digest(files: Mapping[str, str]) -> str:
    """A package's identity: the digest of each file's path and content digest (sorted),
    independent of how the archive compresses them, of times and of modes."""
    lines = "".join(f"{path}\0{sha}\n" for path, sha in sorted(files.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def archive(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """The zip archive of `entries` (path, content), in the order given, deflated, each
    entry with the same time and mode."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for relative, data in entries:
            info = zipfile.ZipInfo(relative, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so that the mode below is read as one
            info.external_attr = (0o100000 | FILE_MODE) << 16
            zf.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


UNPACKED_MAX = 1 << 30
"""The most bytes a `.kxi` may unpack to (1 GiB)."""
ENTRIES_MAX = 100_000
"""The most files a `.kxi` may hold."""


_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
"""The compression methods zipfile reads."""


def unpack(data: bytes) -> dict[str, bytes]:
    """The files of a `.kxi` (a zip) by path; raises BadZipFile, OSError or ValueError.
    An archive that would unpack past `UNPACKED_MAX` or hold over `ENTRIES_MAX` files
    (a zip bomb: kilobytes in a pull request, gigabytes in the runner's memory) is
    refused before any entry is read. The sizes it declares bound what is read: zipfile
    stops an entry at its declared size, and a body that does not fit fails its CRC."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = [info for info in zf.infolist() if not info.is_dir()]
        if len(entries) > ENTRIES_MAX:
            raise ValueError(f"it holds {len(entries):,} files, more than {ENTRIES_MAX:,}")
        unpacked = sum(info.file_size for info in entries)
        if unpacked > UNPACKED_MAX:
            raise ValueError(
                f"it unpacks to {unpacked:,} bytes, more than the {UNPACKED_MAX >> 20:,} MiB"
                " a package may hold"
            )
        for info in entries:
            if info.flag_bits & 0x1:  # zipfile would ask for a password
                raise ValueError(f"{info.filename} is encrypted")
            if info.compress_type not in _METHODS:
                raise ValueError(
                    f"{info.filename} uses compression method {info.compress_type}, which"
                    " zip readers do not share (stored, deflate, bzip2 or lzma)"
                )
        try:
            return {posixpath.normpath(info.filename): zf.read(info) for info in entries}
        except (RuntimeError, EOFError, zlib.error, lzma.LZMAError) as exc:
            # What zipfile raises beyond BadZipFile for an entry it cannot read: a corrupt
            # deflate or lzma stream, a short body, a codec this Python was built without.
            raise ValueError(f"an entry cannot be read: {exc}") from None


def read_prebuilt(path: Path, label: str) -> Artifact:
    """A `.kxi` built elsewhere (`kxi package packit`): its identity, files and
    components, from its content. The package may sit at the archive's top or in one
    folder there."""
    try:
        if path.stat().st_size > UNPACKED_MAX:
            raise ValueError(f"the file is over the {UNPACKED_MAX >> 20:,} MiB a package may hold")
        data = path.read_bytes()
        contents = _rooted(unpack(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(
            [
                Problem(
                    label,
                    message=f"is not a usable .kxi archive (a zip of the package folder): {exc}",
                    hint="point artifact at a .kxi built by `kxi package packit` or"
                    " `reconciler package build`, or use source:",
                )
            ]
        ) from None
    manifest = _manifest(contents.get("manifest.yaml"), label)
    files = {
        relative: hashlib.sha256(content).hexdigest() for relative, content in contents.items()
    }
    loaded_by, components = _components(manifest, contents)
    return Artifact(
        str(manifest.get("name")),
        str(manifest.get("version")),
        path,
        hashlib.sha256(data).hexdigest(),
        dict(sorted(files.items())),
        loaded_by,
        components,
    )


def _json_safe(value: Any) -> Any:
    """YAML's dates and other types as JSON can carry them."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _rooted(contents: dict[str, bytes]) -> dict[str, bytes]:
    """The files relative to the package's top, where `manifest.yaml` is."""
    if "manifest.yaml" in contents:
        return contents
    tops = {relative.split("/", 1)[0] for relative in contents}
    if len(tops) == 1:
        (top,) = tops
        if f"{top}/manifest.yaml" in contents:
            return {
                relative.removeprefix(top + "/"): data
                for relative, data in contents.items()
                if relative.startswith(top + "/")
            }
    return contents


def _write_atomically(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@functools.cache
def _yaml(data: bytes | None) -> Any:
    """The one YAML document of a file inside an archive, or None when it has none we
    read: a prebuilt .kxi is untrusted, so it meets a manifest file's bounds (a nesting
    of 50,000 brackets crashed the C-backed loader; an alias bomb expanded when the
    package object was sent)."""
    if data is None:
        return None
    try:
        documents = parse_documents(data, "manifest.yaml")
    except InputError:
        return None
    return documents[0] if len(documents) == 1 else None


def _manifest(data: bytes | None, label: str) -> dict[str, Any]:
    manifest = _yaml(data)
    if not isinstance(manifest, dict):
        raise InputError(
            [
                Problem(
                    label,
                    message="has no readable manifest.yaml at its top",
                    hint="a kdb Insights package holds manifest.yaml with name and version",
                )
            ]
        )
    return manifest


def _entries(section: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(section, dict):
        return {}
    return {str(name): entry for name, entry in section.items() if isinstance(entry, dict)}


def _components(
    manifest: Mapping[str, Any], contents: Mapping[str, bytes]
) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    owners: dict[str, set[str]] = {}

    def claim(relative: Any, component: str) -> None:
        if isinstance(relative, str) and relative:
            path = posixpath.normpath(relative.removeprefix("file://"))
            if path in contents:
                owners.setdefault(path, set()).add(component)

    components: list[str] = []
    for name, entry in _entries(manifest.get("pipelines")).items():
        component = f"pipeline:{name}"
        components.append(component)
        claim(entry.get("file"), component)
        spec = _yaml(contents.get(posixpath.normpath(str(entry.get("file") or ""))))
        if isinstance(spec, dict):
            claim(spec.get("spec"), component)
    tables = _entries(manifest.get("tables"))
    for name, entry in _entries(manifest.get("databases")).items():
        component = f"database:{name}"
        components.append(component)
        folder = posixpath.normpath(str(entry.get("dir") or ""))
        if folder not in ("", "."):
            for path in contents:
                if path.startswith(folder + "/"):
                    owners.setdefault(path, set()).add(component)
        listed = entry.get("tables") or list(tables)
        for table in listed if isinstance(listed, list) else []:
            claim((tables.get(str(table)) or {}).get("file"), component)
    for name, entry in _entries(manifest.get("views")).items():
        component = f"view:{name}"
        components.append(component)
        claim(entry.get("file"), component)
    loaded_by = {path: tuple(sorted(parts)) for path, parts in sorted(owners.items())}
    return loaded_by, tuple(components)
