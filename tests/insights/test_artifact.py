"""Artifacts: the real equities package builds byte for byte the same from any copy,
honours .kxignore, refuses symbolic links, is cached, and maps files to components."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import InputError
from reconciler.providers.insights import artifact as artifacts
from reconciler.providers.insights.artifact import build, read_prebuilt
from reconciler.providers.insights.build_index import BuildIndex
from reconciler.providers.insights.package_files import package_files
from tests.conftest import run_cli
from tests.insights.world import EQUITIES


def copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name / "equities"
    shutil.copytree(EQUITIES, target)
    return target


def package_repo(tmp_path: Path, source: str = "packages/equities") -> Path:
    """A repository at tmp_path/repo with the example package folder and a Package
    manifest (m.yaml) whose `source` is `source`; the package folder."""
    folder = copy(tmp_path, "repo/packages")
    (tmp_path / "repo" / "m.yaml").write_text(
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        f"spec: {{version: '0.0.1', source: {source}}}\n"
    )
    return folder


def test_the_same_folder_gives_the_same_bytes_from_any_copy(tmp_path: Path) -> None:
    first = copy(tmp_path, "a")
    second = copy(tmp_path, "b")
    for path in second.rglob("*"):  # another machine: other times, other modes
        if path.is_file():
            os.utime(path, (1_700_000_000, 1_700_000_000))
            path.chmod(0o600)
    one = build(first, tmp_path / "cache-a", "a")
    two = build(second, tmp_path / "cache-b", "b")
    assert one.content == two.content  # the identity: paths and bytes, not times or modes
    assert one.read() == two.read()
    assert (one.name, one.version) == ("equities", "0.0.1")
    # A compressed zip with the package folder's layout, as `kxi package packit` makes.
    with zipfile.ZipFile(io.BytesIO(one.read())) as archive:
        entries = archive.infolist()
    names = [e.filename for e in entries]
    assert names == sorted(names) and "manifest.yaml" in names
    assert {e.compress_type for e in entries} == {zipfile.ZIP_DEFLATED}
    assert {(e.date_time, e.external_attr >> 16 & 0o777) for e in entries} == {
        ((1980, 1, 1, 0, 0, 0), 0o644)
    }
    assert "manifest.yaml" in one.files


def test_the_content_digest_does_not_depend_on_the_archive_bytes(tmp_path: Path) -> None:
    """Compressed bytes may differ between zlib builds: the identity is over the files."""
    built = build(copy(tmp_path, "a"), tmp_path / "cache", "a")
    with zipfile.ZipFile(io.BytesIO(built.read())) as archive:
        contents = {i.filename: archive.read(i) for i in archive.infolist()}
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(contents, reverse=True):
            archive.writestr(name, contents[name])
    other = tmp_path / "other.kxi"
    other.write_bytes(stored.getvalue())
    prebuilt = read_prebuilt(other, "other")
    assert prebuilt.sha256 != built.sha256
    assert prebuilt.content == built.content


def test_kxignore_leaves_files_out_and_changes_nothing(tmp_path: Path) -> None:
    folder = copy(tmp_path, "a")
    before = build(folder, tmp_path / "cache", "a")
    (folder / ".vscode").mkdir()
    (folder / ".vscode" / "settings.json").write_text("{}")
    (folder / ".nfs0001").write_text("lock")
    after = build(folder, tmp_path / "cache", "a")
    assert after.sha256 == before.sha256
    assert not any(path.startswith((".vscode", ".nfs")) for path in after.files)
    (folder / "notes.txt").write_text("new")
    assert build(folder, tmp_path / "cache", "a").sha256 != before.sha256


def test_an_unchanged_folder_is_never_archived_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy(tmp_path, "a")
    cache = tmp_path / "cache"
    index = BuildIndex(cache, "t")
    first = build(folder, cache, "a", index)
    index.save()

    def refuse(entries: object) -> bytes:
        raise AssertionError("rebuilt an unchanged folder")

    monkeypatch.setattr(artifacts, "archive", refuse)
    assert build(folder, cache, "a", BuildIndex(cache, "t")).sha256 == first.sha256


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "plain"])
def test_a_replaced_cached_archive_is_built_again_not_pushed(tmp_path: Path, indexed: bool) -> None:
    """A cache file that is not what the folder builds (replaced by anyone) never
    stands in for the folder's artifact."""
    folder = copy(tmp_path, "a")
    cache = tmp_path / "cache"
    index = BuildIndex(cache, "t") if indexed else None
    first = build(folder, cache, "a", index)
    if index is not None:
        index.save()
        index = BuildIndex(cache, "t")
    first.path.write_bytes(b"not what the folder holds")
    again = build(folder, cache, "a", index)
    assert again.sha256 == first.sha256
    assert again.read() != b"not what the folder holds"


def test_old_builds_are_evicted(tmp_path: Path) -> None:
    folder = copy(tmp_path, "a")
    for index in range(artifacts.KEEP + 3):
        (folder / "notes.txt").write_text(str(index))
        build(folder, tmp_path / "cache", "a")
    assert len(list((tmp_path / "cache").glob("equities@*.kxi"))) == artifacts.KEEP


def test_files_map_to_the_components_that_load_them(tmp_path: Path) -> None:
    built = build(copy(tmp_path, "a"), tmp_path / "cache", "a")
    assert built.loaded_by["pipelines/equities-rt.yaml"] == ("pipeline:equities-rt",)
    assert built.loaded_by["src/equities-rt.json"] == ("pipeline:equities-rt",)
    assert built.loaded_by["src/static.json"] == ("pipeline:static",)
    assert built.loaded_by["databases/equities/shards/equities-shard.yaml"] == (
        "database:equities",
    )
    assert built.loaded_by["tables/trade.yaml"] == ("database:equities",)
    assert built.loaded_by["views/HLOC.yaml"] == ("view:HLOC",)
    for shared in ("manifest.yaml", "router/router.yaml", ".kxignore"):
        assert shared not in built.loaded_by
    assert set(built.components) == {
        "pipeline:equities-rt",
        "pipeline:static",
        "database:equities",
        "view:HLOC",
    }


def test_a_prebuilt_artifact_is_read_for_its_identity_and_components(tmp_path: Path) -> None:
    built = build(copy(tmp_path, "a"), tmp_path / "cache", "a")
    prebuilt = tmp_path / "equities-0.0.1.kxi"
    prebuilt.write_bytes(built.read())
    read = read_prebuilt(prebuilt, "x")
    assert (read.sha256, read.files, read.loaded_by) == (built.sha256, built.files, built.loaded_by)
    broken = tmp_path / "broken.kxi"
    broken.write_bytes(b"not an archive")
    with pytest.raises(InputError, match=r"is not a usable \.kxi archive"):
        read_prebuilt(broken, "x")


def _zip_with(mend: Callable[[bytearray, int, int], None]) -> bytes:
    """A one-entry .kxi, changed by `mend(data, local header, central header)`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.yaml", "name: equities\nversion: 0.0.1\n" * 40)
    data = bytearray(buffer.getvalue())
    mend(data, data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02"))
    return bytes(data)


def _encrypted(data: bytearray, local: int, central: int) -> None:
    data[local + 6] |= 1
    data[central + 8] |= 1


def _unknown_method(data: bytearray, local: int, central: int) -> None:
    data[local + 8 : local + 10] = data[central + 10 : central + 12] = (99).to_bytes(2, "little")


def _corrupt_deflate(data: bytearray, local: int, central: int) -> None:
    body = local + 30 + len("manifest.yaml")
    for at in range(body + 2, body + 12):
        data[at] ^= 0x55


@pytest.mark.parametrize(
    "mend,said",
    [
        (_encrypted, "manifest.yaml is encrypted"),
        (_unknown_method, "uses compression method 99"),
        (_corrupt_deflate, "while decompressing data"),
    ],
    ids=["encrypted", "unknown-method", "corrupt-deflate"],
)
def test_a_prebuilt_artifact_zipfile_cannot_read_is_an_input_error(
    tmp_path: Path, mend: Callable[[bytearray, int, int], None], said: str
) -> None:
    # zipfile raises RuntimeError, an error of its own for the method, and zlib.error for
    # these: each was an internal error from a file a pull request can commit.
    prebuilt = tmp_path / "odd.kxi"
    prebuilt.write_bytes(_zip_with(mend))
    with pytest.raises(InputError, match=r"is not a usable \.kxi archive") as raised:
        read_prebuilt(prebuilt, "x")
    assert said in str(raised.value.problems[0].message)


@pytest.mark.parametrize(
    "manifest",
    [
        "name: equities\nversion: 0.0.1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "name: equities\nversion: 0.0.1\na0: &a0 [q,q,q,q,q,q,q,q,q,q]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
    ],
    ids=["nested-50000-deep", "alias-bomb"],
)
def test_a_prebuilt_artifacts_manifest_meets_a_manifest_files_bounds(
    tmp_path: Path, manifest: str
) -> None:
    # The first crashed the process (the C-backed loader overflowed the stack); the
    # second expanded to 10^9 values once the package object was sent.
    prebuilt = tmp_path / "odd.kxi"
    with zipfile.ZipFile(prebuilt, "w") as zf:
        zf.writestr("manifest.yaml", manifest)
    with pytest.raises(InputError, match=r"has no readable manifest\.yaml"):
        read_prebuilt(prebuilt, "x")


def test_a_prebuilt_artifact_that_unpacks_past_the_limit_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip bomb committed as a package's artifact: refused from the sizes it declares,
    at the manifest's line, before anything is unpacked or any platform contacted."""
    monkeypatch.setattr(artifacts, "UNPACKED_MAX", 4 << 20)
    repo = tmp_path / "repo"
    repo.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.yaml", "name: equities\nversion: 0.0.1\n")
        zf.writestr("data/zeros.bin", bytes(16 << 20))  # 16 MiB in about 16 KiB
    (repo / "equities.kxi").write_bytes(buffer.getvalue())
    assert len(buffer.getvalue()) < 64 << 10
    (repo / "m.yaml").write_text(
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        "spec: {version: '0.0.1', artifact: equities.kxi}\n"
    )
    (repo / "reconciler.yaml").write_text(
        "manifests: [.]\nstate: sqlite:///.reconciler/state.db\n"
        "targets:\n  insights: {provider: insights, url: embedded}\n"
    )
    read: list[object] = []
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *args: read.append(args))
    assert run_cli("plan", str(repo)) == 3
    err = capsys.readouterr().err
    assert "artifact equities.kxi" in err and "more than the 4 MiB a package may hold" in err
    assert "nothing was contacted" in err
    assert read == []
    # And a file over the limit is not read at all.
    (repo / "equities.kxi").write_bytes(os.urandom(5 << 20))
    assert run_cli("plan", str(repo)) == 3
    assert "the file is over the 4 MiB a package may hold" in capsys.readouterr().err


def test_a_package_folder_past_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "UNPACKED_MAX", 4 << 20)
    folder = copy(tmp_path, "repo/packages")
    (folder / "data.bin").write_bytes(bytes(5 << 20))
    (tmp_path / "repo" / "m.yaml").write_text(
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        "spec: {version: '0.0.1', source: packages/equities}\n"
    )
    (tmp_path / "repo" / "reconciler.yaml").write_text(
        "manifests: [m.yaml]\nstate: sqlite:///.reconciler/state.db\n"
        "targets:\n  insights: {provider: insights, url: embedded}\n"
    )
    assert run_cli("plan", str(tmp_path / "repo")) == 3
    err = capsys.readouterr().err
    assert "more than the 4 MiB a package may hold" in err and ".kxignore" in err
    (folder / ".kxignore").write_text("data.bin\n")
    assert run_cli("plan", str(tmp_path / "repo")) == 0


def test_a_symbolic_link_in_a_package_is_refused_at_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = package_repo(tmp_path)
    (folder / "src" / "link.json").symlink_to(folder / "src" / "static.json")
    assert run_cli("validate", str(tmp_path / "repo")) == 3
    err = capsys.readouterr().err
    assert "m.yaml:4" in err
    assert "equities/src/link.json is a symbolic link" in err


def test_a_fifo_in_a_package_is_refused_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its read waited for a writer for ever: `package build` and every plan hung.
    folder = package_repo(tmp_path)
    os.mkfifo(folder / "src" / "feed.q")
    assert run_cli("validate", str(tmp_path / "repo")) == 3
    err = capsys.readouterr().err
    assert "m.yaml:4" in err and "equities/src/feed.q is not a regular file" in err
    (folder / ".kxignore").write_text("feed.q\n")
    assert run_cli("validate", str(tmp_path / "repo")) == 0


@pytest.mark.parametrize(
    "source,said",
    [
        ('"packages/equi\\0ties"', "spec.source: holds a control character"),
        ("packages/loop", "spec.source 'packages/loop' does not exist"),
    ],
    ids=["a NUL", "a link loop"],
)
def test_a_package_source_no_file_system_can_follow_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, said: str
) -> None:
    # Both were internal errors: Python refuses a NUL (ValueError), pathlib's resolve a
    # loop (RuntimeError).
    packages = package_repo(tmp_path, source).parent
    (packages / "loop").symlink_to(packages / "loop2")
    (packages / "loop2").symlink_to(packages / "loop")
    assert run_cli("validate", str(tmp_path / "repo")) == 3
    err = capsys.readouterr().err
    assert "m.yaml:4" in err and said in err
    assert "internal error" not in err


@pytest.mark.parametrize(
    "make,said",
    [
        # A link could make the runner's own files the patterns (and its errors print them).
        (
            lambda ignore, outside: ignore.symlink_to(outside),
            "equities/.kxignore is a symbolic link",
        ),
        (lambda ignore, outside: ignore.write_bytes(b"\xff\xfe\x00x"), "is not UTF-8 text"),
        (
            lambda ignore, outside: ignore.write_text("*.tmp\n[z-a]\n"),
            "equities/.kxignore:2: '[z-a]' is not a gitignore pattern",
        ),
    ],
    ids=["link", "binary", "bad-pattern"],
)
def test_an_unusable_kxignore_is_an_input_error_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path, Path], object],
    said: str,
) -> None:
    folder = copy(tmp_path, "repo/packages")
    outside = tmp_path / "runner-file"
    outside.write_text("[z-a]\n")
    ignore = folder / ".kxignore"
    ignore.unlink(missing_ok=True)
    make(ignore, outside)
    (tmp_path / "repo" / "m.yaml").write_text(
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        "spec: {version: '0.0.1', source: packages/equities}\n"
    )
    assert run_cli("validate", str(tmp_path / "repo")) == 3
    err = capsys.readouterr().err
    assert "m.yaml:4" in err
    assert said in err
    assert "internal error" not in err


# --- what a warm run reuses (build_index) --------------------------------------------


def _reads_inside(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every read of a file in `folder` from now on."""
    reads: list[Path] = []
    opened = Path.open

    def counted(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Path.read_bytes opens the file too; hashing opens it and reads in chunks.
        if folder in self.parents:
            reads.append(self)
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counted)
    return reads


def _built_once(tmp_path: Path, *, aged: bool = True) -> tuple[Path, Path, artifacts.Artifact]:
    """A package folder built once with an index, the index saved: (folder, cache, build)."""
    folder = copy(tmp_path, "a")
    for path in folder.rglob("*"):
        if path.is_file():
            if aged:  # last written a minute ago: past the index's racy window
                stat = path.stat()
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 60_000_000_000))
            else:  # written now: inside it
                os.utime(path)
    cache = tmp_path / "cache"
    index = BuildIndex(cache, "insights")
    first = build(folder, cache, "a", index)
    index.save()
    return folder, cache, first


def _again(folder: Path, cache: Path) -> artifacts.Artifact:
    return build(folder, cache, "a", BuildIndex(cache, "insights"))


def test_a_warm_run_reads_no_file_of_an_unchanged_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache, cold = _built_once(tmp_path)
    reads = _reads_inside(folder, monkeypatch)
    assert _again(folder, cache) == cold
    # Only the ignore file, which says what the folder's files are.
    assert reads == [folder / ".kxignore"]


def test_an_edit_that_keeps_size_and_time_is_still_seen(tmp_path: Path) -> None:
    folder, cache, before = _built_once(tmp_path)
    edited = folder / "views" / "analytics.yaml"
    stat = edited.stat()
    edited.write_text(edited.read_text().replace("a", "b", 1))
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as before
    assert edited.stat().st_size == stat.st_size
    after = _again(folder, cache)
    relative = edited.relative_to(folder).as_posix()
    assert after.files[relative] != before.files[relative]
    assert after.sha256 != before.sha256


def test_a_file_written_just_before_the_index_is_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache, _ = _built_once(tmp_path, aged=False)
    reads = _reads_inside(folder, monkeypatch)
    _again(folder, cache)
    assert folder / "manifest.yaml" in reads


def test_an_evicted_archive_is_built_again_the_same(tmp_path: Path) -> None:
    folder, cache, first = _built_once(tmp_path)
    first.path.unlink()
    again = _again(folder, cache)
    assert again.path.is_file()
    assert again.sha256 == first.sha256


def test_a_torn_index_is_ignored(tmp_path: Path) -> None:
    folder = copy(tmp_path, "a")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "builds-insights.marshal").write_bytes(b"\x00torn")
    assert build(folder, cache, "a", BuildIndex(cache, "insights")).name == "equities"


@pytest.mark.parametrize(
    ("ignore", "kept", "left_out"),
    [
        ("src/*.q\n", ["src/sub/deep.q"], ["src/top.q"]),  # '*' stays in its folder
        ("doc/**/*.md\n", ["doc/keep.txt"], ["doc/top.md", "doc/a/b/deep.md"]),  # '**' spans 0+
        ("*.md\n!doc/top.md\n", ["doc/top.md"], ["doc/a/b/deep.md"]),  # taken back in
        (
            "doc/\n!doc/top.md\n",
            [],
            ["doc/top.md", "doc/keep.txt"],
        ),  # not out of an excluded folder
        ("/top.txt\n", ["src/top.txt"], ["top.txt"]),  # anchored at the package's top
    ],
)
def test_kxignore_has_gits_semantics(
    tmp_path: Path, ignore: str, kept: list[str], left_out: list[str]
) -> None:
    """An artifact holds what git would hold under the same patterns in .gitignore."""
    folder = tmp_path / "pkg"
    for relative in (
        "src/top.q",
        "src/sub/deep.q",
        "src/top.txt",
        "top.txt",
        "doc/top.md",
        "doc/keep.txt",
        "doc/a/b/deep.md",
    ):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(relative)
    (folder / ".kxignore").write_text(ignore)
    listed = {path for path, _ in package_files(folder)}
    assert set(kept) <= listed
    assert not set(left_out) & listed


def test_package_build_writes_what_apply_would_push(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy(tmp_path, "src")
    (folder / ".vscode").mkdir()
    (folder / ".vscode" / "settings.json").write_text("{}")
    out = tmp_path / "dist"
    assert run_cli("package", "build", str(folder), "--out", str(out), "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    written = out / "equities-0.0.1.kxi"
    assert report["artifact"] == str(written) and written.is_file()
    assert report["content"] == build(folder, tmp_path / "cache", "x").content
    assert "pipeline:equities-rt" in report["components"]
    with zipfile.ZipFile(written) as archive:
        names = archive.namelist()
    assert "manifest.yaml" in names and ".vscode/settings.json" not in names
    # The same package, prebuilt: the same identity as its folder.
    assert read_prebuilt(written, "dist").content == report["content"]


def test_package_build_of_a_folder_without_a_manifest_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("package", "build", str(tmp_path)) == 3
    assert "has no manifest.yaml" in capsys.readouterr().err
