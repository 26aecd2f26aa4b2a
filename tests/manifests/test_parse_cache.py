"""What a warm run reuses when loading: parsed files by their bytes and pipeline specs
pachd's schema accepted. A cached load must be exactly the load it replaces: an edit is
always seen, an error always reported, and a cache that is broken or cannot be written
changes nothing but speed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import InputError
from reconciler.manifests import LoadOptions, Manifests, load
from reconciler.manifests import documents as documents_module
from reconciler.manifests.loader import cache_folder
from reconciler.manifests.parse_cache import FILE_NAME
from reconciler.providers.pachyderm import pipeline_rules

EXAMPLE = Path(__file__).parent.parent / "data" / "plans" / "01-create-everything" / "manifests"
CACHED = LoadOptions(cache=True)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLE, target)
    return target


def cache_of(folder: Path) -> Path:
    found = cache_folder(folder)
    assert found is not None
    return found


def specs(manifests: Manifests) -> dict[str, Any]:
    return {str(r.id): r.spec.spec_data() for r in manifests.resources}


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("parsed a file the cache holds")

    monkeypatch.setattr(documents_module._Builder, "documents", refuse)


def test_a_second_load_parses_nothing_and_loads_the_same(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load(folder, CACHED)
    assert (cache_of(folder) / FILE_NAME).is_file()
    no_parsing(monkeypatch)
    second = load(folder, CACHED)
    assert specs(second) == specs(first)
    assert [r.origin for r in second.resources] == [r.origin for r in first.resources]


def test_an_edit_is_seen_even_with_the_same_size_and_time(folder: Path) -> None:
    load(folder, CACHED)
    file = folder / "all.yaml"
    stat = file.stat()
    file.write_text(file.read_text().replace("python:3.12", "python:3.13"))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    images = {
        str(r.id): r.spec.spec_data()["transform"]["image"]
        for r in load(folder, CACHED).resources
        if r.kind == "Pipeline"
    }
    assert set(images.values()) == {"python:3.13"}


def test_a_file_that_does_not_parse_is_reported_on_every_run(folder: Path) -> None:
    (folder / "broken.yaml").write_text("apiVersion: pachyderm/v1\nkind: [unclosed\n")
    for _ in range(2):
        with pytest.raises(InputError) as caught:
            load(folder, CACHED)
        assert any(
            p.file.endswith("broken.yaml") and "YAML syntax error" in p.message
            for p in caught.value.problems
        )


def test_a_refused_pipeline_is_reported_on_every_run_an_accepted_one_checked_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(folder, CACHED)
    checks: list[object] = []
    accepts = pipeline_rules._accepts()

    def counted(request: object) -> object:
        checks.append(request)
        return accepts(request)

    monkeypatch.setattr(pipeline_rules, "_accepts", lambda: counted)
    load(folder, CACHED)
    assert checks == []  # both pipelines were accepted before
    file = folder / "all.yaml"
    file.write_text(file.read_text().replace('"glob": "/*"', '"glob": 7', 1))
    for _ in range(2):
        with pytest.raises(InputError) as caught:
            load(folder, CACHED)
        assert any("glob" in p.message for p in caught.value.problems)


def test_a_broken_cache_is_ignored_and_replaced(folder: Path) -> None:
    expected = specs(load(folder))
    cache = cache_of(folder) / FILE_NAME
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x00 not a cache")
    assert specs(load(folder, CACHED)) == expected
    assert specs(load(folder, CACHED)) == expected
    assert cache.read_bytes() != b"\x00 not a cache"


def test_a_cache_that_cannot_be_written_is_done_without(folder: Path) -> None:
    cache_of(folder).parent.mkdir(parents=True)
    cache_of(folder).write_text("a file where the folder would be")
    assert specs(load(folder, CACHED)) == specs(load(folder))


def test_the_cache_keeps_only_the_files_of_the_last_run(folder: Path) -> None:
    extra = folder / "extra.yaml"
    extra.write_text("apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: extra}\nspec: {}\n")
    load(folder, CACHED)
    cache = cache_of(folder) / FILE_NAME
    with_extra = cache.stat().st_size
    extra.unlink()
    load(folder, CACHED)
    assert cache.stat().st_size < with_extra


def test_a_cache_committed_in_the_repository_changes_nothing(folder: Path) -> None:
    """A cache file in the source tree (a pull request can commit one) is never read:
    what loads is what the YAML says."""
    expected = specs(load(folder))
    load(folder, CACHED)
    planted = folder / ".reconciler" / "cache" / FILE_NAME
    planted.parent.mkdir(parents=True)
    planted.write_bytes(cache_of(folder).joinpath(FILE_NAME).read_bytes())
    cache_of(folder).joinpath(FILE_NAME).unlink()
    file = folder / "all.yaml"
    file.write_text(file.read_text().replace("python:3.12", "python:3.13"))
    loaded = specs(load(folder, CACHED))
    assert loaded != expected
    assert "python:3.13" in str(loaded)


def test_no_cache_inside_the_manifests_folder(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_CACHE", str(folder / "cache-here"))
    assert cache_folder(folder) is None
    assert specs(load(folder, CACHED)) == specs(load(folder))
    assert not (folder / "cache-here").exists()
