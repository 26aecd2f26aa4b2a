"""The pre-commit hook: what `.pre-commit-hooks.yaml` runs passes good manifests and
fails bad ones with exit 3, without the secrets a developer's machine does not have."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from ruamel.yaml import YAML

from tests.conftest import EXAMPLES, ROOT, run_cli


def hook() -> dict[str, object]:
    (entry,) = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert isinstance(entry, dict)
    return entry


def test_the_hook_runs_validate_on_the_whole_repository() -> None:
    entry = hook()
    assert entry["id"] == "reconciler-validate"
    assert entry["language"] == "python"
    assert entry["pass_filenames"] is False
    assert shlex.split(str(entry["entry"]))[:2] == ["reconciler", "validate"]


def test_the_hook_passes_good_manifests_and_fails_bad_ones(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "quickstart", folder)
    command = shlex.split(str(hook()["entry"]))[1:]
    # The prod profile names ${env:...} secrets that a developer's machine lacks.
    assert run_cli(*command, "--profile", "prod", str(folder)) == 0
    manifest = folder / "manifests" / "pachyderm.yaml"
    manifest.write_text(manifest.read_text().replace("image:", "imgae:", 1))
    assert run_cli(*command, str(folder)) == 3
