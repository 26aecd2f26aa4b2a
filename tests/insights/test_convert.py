"""`reconciler package convert`: a legacy assembly to a package folder and its Package
manifest, locally, saying what could not be mapped."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.errors import BadValue
from reconciler.providers.insights.assembly import convert
from reconciler.sandbox.app import stats_of
from reconciler.sandbox.store import Store
from tests.conftest import DATA, run_cli

SENSORS = DATA / "insights" / "assemblies" / "sensors.yaml"


def _read(path: Path) -> dict[str, object]:
    data: dict[str, object] = YAML(typ="safe").load(path.read_text())
    return data


def test_an_assembly_becomes_a_package_that_validates_and_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli("package", "convert", str(SENSORS), "--out", str(out)) == 0
    said = capsys.readouterr().out
    assert "not mapped" in said and "bus" in said and "elements.gw" in said
    manifest = _read(out / "sensors" / "manifest.yaml")
    assert (manifest["name"], manifest["version"]) == ("sensors", "0.0.1")
    assert manifest["pipelines"] == {"ingest": {"file": "pipelines/ingest.yaml"}}
    assert manifest["tables"] == {"trace": {"file": "tables/trace.yaml"}}
    shard = _read(out / "sensors" / "databases" / "sensors" / "shards" / "sensors-shard.yaml")
    assert set(shard) == {"name", "labels", "mounts", "sm", "daps"}
    assert _read(out / "sensors" / "tables" / "trace.yaml")["prtnCol"] == "updateTS"
    assert _read(out / "sensors.package.yaml")["spec"] == {
        "version": "0.0.1",
        "source": "sensors",
    }
    # What it wrote is a package reconciler takes as it is.
    assert run_cli("validate", str(out / "sensors.package.yaml")) == 0
    assert run_cli("package", "build", str(out / "sensors"), "--out", str(tmp_path)) == 0
    assert (tmp_path / "sensors-0.0.1.kxi").is_file()


def test_the_microservice_form_converts_too() -> None:
    assembly = {"name": "Quotes", "tables": {"quote": {"type": "partitioned"}}}
    package = convert(assembly, "1.2.0")
    assert package.name == "quotes"
    assert set(package.files) == {"manifest.yaml", "tables/quote.yaml"}
    assert package.unmapped == []


@pytest.mark.parametrize(
    "assembly",
    [
        ["a list"],
        {"tables": {}},
        {"name": "9lives"},
        {"name": "a", "tables": {"../../outside": {}}},
        {"name": "a", "tables": {"t": ["not", "a", "schema"]}},
        {"name": "a", "tables": ["t"]},
        {"name": "a", "elements": {"sp": {"pipelines": {"p/q": {}}}}},
    ],
    ids=[
        "not a mapping",
        "no name",
        "not a package name",
        "a table name leading out",
        "a table that is not a mapping",
        "tables that are not a mapping",
        "a pipeline name with a slash",
    ],
)
def test_what_is_not_an_assembly_is_refused(assembly: object) -> None:
    with pytest.raises(BadValue):
        convert(assembly, "0.0.1")


def test_converting_over_an_existing_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sensors").mkdir()
    assert run_cli("package", "convert", str(SENSORS), "--out", str(tmp_path)) == 3
    assert "exists already" in capsys.readouterr().err


def test_with_a_target_the_package_manager_converts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "repo"
    config.mkdir()
    (config / "reconciler.yaml").write_text(
        "targets:\n  insights: {provider: insights, url: embedded}\n"
    )
    out = tmp_path / "out"
    args = ["package", "convert", str(SENSORS), "--out", str(out), "--manifests", str(config)]
    assert run_cli(*args, "--target", "insights") == 0
    assert "converted by the Package Manager of target 'insights'" in capsys.readouterr().out
    manifest = _read(out / "sensors" / "manifest.yaml")
    assert manifest["pipelines"] == {"ingest": {"file": "pipelines/ingest.yaml"}}
    stats = Store(config / ".reconciler" / "sandbox.db")
    try:
        assert stats_of(stats)["events"] == {"convert sensors": 1}
    finally:
        stats.close()
    assert run_cli("validate", str(out / "sensors.package.yaml")) == 0
    # A target that is not kdb Insights, or none of that name: an input error.
    assert run_cli(*args, "--target", "nosuch") == 3
    assert "no kdb Insights target named 'nosuch'" in capsys.readouterr().err
