from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.insights.world import World, worlds


@pytest.fixture(params=[False, True], ids=["in-process", "uvicorn"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from worlds(tmp_path, bool(request.param))
