"""`make demo` works from a clean clone: the script it runs, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _stats(output: str) -> list[dict[str, object]]:
    """Every `sandbox stats` printout in the demo's output, in order."""
    found = []
    for block in output.split("\n{\n")[1:]:
        end = block.index("\n}\n") if "\n}\n" in block else len(block)
        found.append(json.loads("{\n" + block[: end + 2]))
    return found


@pytest.mark.slow
def test_the_demo_applies_the_quickstart_then_touches_exactly_what_each_change_needs(
    tmp_path: Path,
) -> None:
    demo = tmp_path / "demo"
    env = {**os.environ, "BIN": str(Path(sys.executable).parent), "DEMO": str(demo)}
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All checks passed." in done.stdout
    assert "Apply complete: 8 done" in done.stdout
    # After the first apply, and after the defaults change (pachd runs every pipeline
    # with cluster defaults the manifests never wrote: still nothing to do).
    assert done.stdout.count("No changes. The targets match the manifests.") == 3
    # The closing status: both targets in sync, what each manages.
    assert done.stdout.count("in sync with the manifests") == 2
    assert "manages 7: 1 ClusterDefaults, 3 Pipeline, 1 Project, 2 Repo" in done.stdout
    again, image, package, defaults = _stats(done.stdout)
    assert defaults["restarts"] == {}  # new defaults without regenerate restart nothing
    assert defaults["mutating"] == 1
    assert "3 pipeline(s) take the new defaults at their next update" in done.stdout
    assert (again["mutating"], again["restarts"]) == (0, {})
    assert image["restarts"] == {"pachyderm:Pipeline/vision/montage": 1}
    assert image["mutating"] == 1
    assert package["restarts"] == {"insights:trades/pipeline:trades-rt": 1}
    # The push, then that one pipeline torn down alone and deployed again.
    assert package["events"] == {
        "artifact push": 1,
        "teardown trades pipeline:trades-rt": 1,
        "deploy trades pipeline:trades-rt": 1,
    }
    assert package["mutating"] == 3
    # Last, the pull-request comment for a one-line change: what it changes, what it does.
    comment = done.stdout[done.stdout.index("<!-- reconciler-plan -->") :]
    assert "**Manifest changes since `main`" in comment and ": 1 changed" in comment
    assert "**Plan: 1 to patch; 8 unchanged.**" in comment
    assert (
        comment.count('~ spec.transform.image: "pachyderm/opencv:1.0" → "pachyderm/opencv:1.1"')
        == 2
    )
