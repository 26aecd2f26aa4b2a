from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.engine import Connector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"
REFERENCE = ROOT.parent / "shared" / "reference"


def require_reference() -> Path:
    """The shared reference files; CI always has them beside the checkout."""
    if not REFERENCE.is_dir():
        if os.environ.get("CI"):
            raise AssertionError(f"shared reference files missing at {REFERENCE}")
        pytest.skip(f"shared reference files not found at {REFERENCE}")
    return REFERENCE


def run_cli(*args: str, connector: Connector | None = None) -> int:
    """Run the command line in-process (with fake providers, if given); its exit code."""
    try:
        main(list(args), connector)
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("the command line did not exit")
