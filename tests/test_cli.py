"""The command line on the quickstart: validate, graph, schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler import schemas
from reconciler.cli import CONTRACT_FILE
from reconciler.manifests.catalog import installed
from reconciler.manifests.schemas import all_schemas, dumps
from tests.conftest import EXAMPLES, ROOT, run_cli

QUICKSTART = str(EXAMPLES / "quickstart")
BUILT_IN = installed().only(["insights", "pachyderm"])


def test_validate_quickstart_prints_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", QUICKSTART) == 0
    out = capsys.readouterr().out
    assert "valid: 8 resources in 2 files" in out
    for kind, count in (("Pipeline", 3), ("Repo", 2), ("Project", 1), ("Package", 1)):
        assert any(kind in line and line.rstrip().endswith(str(count)) for line in out.splitlines())


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", QUICKSTART, "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True
    assert report["counts"]["pachyderm"] == {"Pipeline": 3, "Project": 1, "Repo": 2}
    assert {
        "id": "insights:Package/trades",
        "file": report["resources"][0]["file"],
        "line": 3,
    } in report["resources"]


def test_validate_with_profile_select(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = (EXAMPLES / "quickstart" / "reconciler.yaml").read_text()
    config += '  edges-only:\n    select: ["pachyderm:Pipeline/vision/edges"]\n'
    import shutil

    shutil.copytree(EXAMPLES / "quickstart", tmp_path / "q")
    (tmp_path / "q" / "reconciler.yaml").write_text(config)
    assert run_cli("validate", str(tmp_path / "q"), "--profile", "edges-only") == 0
    assert "3 selected" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fmt,marker",
    [("text", "<- pachyderm:Project/vision"), ("dot", "digraph"), ("mermaid", "flowchart")],
)
def test_graph_formats(fmt: str, marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("graph", QUICKSTART, "--format", fmt) == 0
    assert marker in capsys.readouterr().out


def test_graph_select(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("graph", QUICKSTART, "--select", "kind=Deployment") == 0
    out = capsys.readouterr().out
    assert "insights:Package/trades" in out and "pachyderm" not in out


def test_bad_selector_is_invalid_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("graph", QUICKSTART, "--select", "knd=Pipeline") == 3
    assert "did you mean 'kind'" in capsys.readouterr().err


def test_schema_command_writes_every_schema(tmp_path: Path) -> None:
    assert run_cli("schema", "--out", str(tmp_path)) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([*all_schemas(installed()), CONTRACT_FILE])


def test_specs_folder_is_up_to_date() -> None:
    """Fails when a model changed and `make schemas` was not run."""
    for name, schema in all_schemas(BUILT_IN).items():
        path = ROOT / "specs" / name
        assert path.exists(), f"specs/{name} missing: run `make schemas`"
        assert path.read_text() == dumps(schema), f"specs/{name} is stale: run `make schemas`"
    contract = ROOT / "specs" / CONTRACT_FILE
    assert contract.read_text() == schemas.text(schemas.PACKAGE_MANAGER), (
        f"specs/{CONTRACT_FILE} differs from the contract the code reads: run `make schemas`"
    )


def test_pipeline_schema_accepts_a_real_spec_shape() -> None:
    schema = all_schemas(BUILT_IN)["pachyderm.pipeline.schema.json"]
    spec_props = schema["properties"]["spec"]["properties"]
    assert {"transform", "input", "parallelismSpec", "stopped", "reprocessOnUpdate"} <= set(
        spec_props
    )
    assert "pipeline" not in spec_props


def test_help_lists_each_command_in_flowing_sentences() -> None:
    """`reconciler --help` is a newcomer's first page: each command's summary wraps to
    the terminal, not at the line breaks of the source's docstrings."""
    import os
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "reconciler", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "240", "NO_COLOR": "1"},
        check=True,
    ).stdout
    lines = [" ".join(line.strip("│ ").split()) for line in shown.splitlines()]
    for summary in (
        "apply Make the targets match the manifests (asks first unless --yes). Holds the lock"
        " of every target it touches for the whole run.",
        "unlock Remove a target's apply lock: for a holder that is gone but was not noticed"
        " (another host's runner killed less than a minute ago).",
    ):
        assert any(line.startswith(summary) for line in lines), shown


def test_a_cache_folder_the_machine_will_not_give_is_said_not_called_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # RECONCILER_CACHE set to a file: the run cache cannot be made. It was reported as
    # "internal error ... this is a bug".
    shutil.copytree(EXAMPLES / "quickstart", tmp_path / "q")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RECONCILER_CACHE", str(blocker))
    assert run_cli("plan", str(tmp_path / "q")) == 1
    err = capsys.readouterr().err
    assert f"error: Not a directory: {blocker}/" in err
    assert "RECONCILER_CACHE" in err
    assert "internal error" not in err and "Traceback" not in err
