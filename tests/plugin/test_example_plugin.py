"""The example third-party provider (`examples/provider-plugin`, installed by `make
test`) end to end: reconciler finds it through its entry point and validates, plans,
applies, re-plans to nothing and prunes its resources as it does the built-in ones."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.manifests.catalog import installed
from reconciler.manifests.schemas import all_schemas
from tests.conftest import run_cli
from tests.pachyderm.helpers import served

if "kv" not in installed().plugins:
    if os.environ.get("CI"):
        raise AssertionError("the example plugin is not installed: run `make install`")
    pytest.skip(
        "the example plugin is not installed (make install installs it)", allow_module_level=True
    )

from reconciler_kv.server import create_app

BUCKET = """apiVersion: kv/v1
kind: Bucket
metadata: {name: settings}
spec: {description: team settings}
"""


def key(name: str, value: str, bucket: str = "settings") -> str:
    return (
        f"apiVersion: kv/v1\nkind: Key\nmetadata: {{name: {name}}}\n"
        f"spec: {{bucket: {bucket}, value: '{value}'}}\n"
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """The store over real HTTP; yields its URL."""
    with served(create_app(tmp_path / "store.json")) as url:
        yield url


def calls(url: str) -> list[str]:
    answer: list[str] = httpx.get(f"{url}/v1/calls").json()["calls"]
    return answer


def manifests(folder: Path, url: str, *documents: str, prune: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "reconciler.yaml").write_text(
        f"state: sqlite:///state.db\nprune: {str(prune).lower()}\n"
        f"targets:\n  kv: {{provider: kv, url: '{url}'}}\n"
    )
    (folder / "store.yaml").write_text("---\n".join(documents))
    return folder


def test_plan_apply_noop_change_and_prune_over_http(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = manifests(tmp_path / "m", store, BUCKET, key("retention-days", "30"), key("tz", "UTC"))
    assert run_cli("validate", str(folder)) == 0
    assert run_cli("plan", str(folder), "--detailed-exitcode") == 2
    assert "3 to create" in capsys.readouterr().out
    assert run_cli("apply", str(folder), "--yes") == 0
    # The bucket first: its keys refer to it.
    assert calls(store)[0] == "PUT bucket settings"
    assert sorted(calls(store)[1:]) == ["PUT key settings/retention-days", "PUT key settings/tz"]

    capsys.readouterr()
    assert run_cli("plan", str(folder), "--detailed-exitcode") == 0
    assert "No changes" in capsys.readouterr().out
    assert run_cli("apply", str(folder), "--yes") == 0
    assert len(calls(store)) == 3, "a no-op apply made a call"

    manifests(folder, store, BUCKET, key("retention-days", "90"), key("tz", "UTC"))
    assert run_cli("apply", str(folder), "--yes") == 0
    assert calls(store)[3:] == ["PUT key settings/retention-days"]

    # Everything leaves the manifests: keys go before the bucket that holds them.
    (folder / "store.yaml").write_text("")
    assert run_cli("apply", str(folder), "--yes", "--allow-mass-delete") == 0
    deleted = calls(store)[4:]
    assert sorted(deleted[:2]) == ["DELETE key settings/retention-days", "DELETE key settings/tz"]
    assert deleted[2:] == ["DELETE bucket settings"]
    assert httpx.get(f"{store}/v1/buckets").json() == {"buckets": []}


def test_a_key_moved_to_another_bucket_is_replaced(tmp_path: Path, store: str) -> None:
    other = BUCKET.replace("settings", "archive")
    folder = manifests(tmp_path / "m", store, BUCKET, other, key("tz", "UTC"))
    assert run_cli("apply", str(folder), "--yes") == 0
    manifests(folder, store, BUCKET, other, key("tz", "UTC", bucket="archive"))
    assert run_cli("apply", str(folder), "--yes") == 0
    assert calls(store)[3:] == ["DELETE key settings/tz", "PUT key archive/tz"]


def test_bad_manifests_name_file_and_line_and_call_nothing(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = manifests(tmp_path / "m", store, BUCKET, key("Bad_Name", "1", bucket="nowhere"))
    assert run_cli("apply", str(folder), "--yes") == 3
    err = capsys.readouterr().err
    assert "store.yaml:8" in err and "not a valid kv name" in err
    assert calls(store) == []


def test_a_missing_bucket_is_a_reference_error(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = manifests(tmp_path / "m", store, key("tz", "UTC", bucket="nowhere"))
    assert run_cli("plan", str(folder)) == 3
    assert "add a kv/v1 Bucket manifest named 'nowhere'" in capsys.readouterr().err


def test_embedded_serves_the_plugins_own_store(tmp_path: Path) -> None:
    folder = manifests(tmp_path / "m", "embedded", BUCKET, key("tz", "UTC"))
    assert run_cli("apply", str(folder), "--yes") == 0
    held = json.loads((folder / ".reconciler" / "kv.json").read_text())
    assert held["keys"] == {"settings": {"tz": "UTC"}}
    assert run_cli("plan", str(folder), "--detailed-exitcode") == 0


def test_its_kinds_and_target_have_json_schemas() -> None:
    schemas = all_schemas(installed())
    assert "kv.key.schema.json" in schemas and "kv.bucket.schema.json" in schemas
    targets = json.dumps(schemas["reconciler.schema.json"])
    assert '"const": "kv"' in targets


def test_a_target_of_an_uninstalled_provider_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "reconciler.yaml").write_text("targets:\n  x: {provider: nosuch, url: embedded}\n")
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "reconciler.yaml:2" in err and "'kv'" in err


def test_a_plugin_reference_that_cannot_load_is_the_plugins_error() -> None:
    from reconciler.errors import PluginError
    from reconciler.providers.plugin import deferred, resolve

    assert resolve("reconciler_kv.provider:connect").__name__ == "connect"
    broken = deferred("reconciler_kv.provider:no_such_function")  # nothing imported yet
    with pytest.raises(PluginError, match="no_such_function"):
        broken()
    with pytest.raises(PluginError, match="cannot be loaded"):
        resolve("no_such_module:connect")
