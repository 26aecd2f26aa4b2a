"""`make demo` works from a clean clone: the script it runs, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_demo_applies_the_quickstart_then_restarts_one_pipeline(tmp_path: Path) -> None:
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
    assert "Apply complete: 6 done" in done.stdout
    assert "No changes. The targets match the manifests." in done.stdout
    last = json.loads(done.stdout[done.stdout.rindex("\n{\n") :])
    assert last["restarts"] == {"pachyderm:Pipeline/vision/montage": 1}
    assert last["mutating"] == 1
