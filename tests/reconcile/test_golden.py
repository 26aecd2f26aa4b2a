"""Golden plans: desired + live state in, the expected plan (and apply) out. See golden.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reconcile.golden import CASES, dumps, run_case

CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir())


def test_there_are_enough_cases() -> None:
    assert len(CASE_DIRS) >= 25


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_golden_plan(case: Path, tmp_path: Path) -> None:
    result = run_case(case, tmp_path)
    expected_file = case / "expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(dumps(result))
    assert expected_file.exists(), f"run with UPDATE_GOLDEN=1 to create {expected_file}"
    assert result == json.loads(expected_file.read_text())
