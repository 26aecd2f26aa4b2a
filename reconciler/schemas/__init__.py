"""Data, not code: the platforms' own JSON Schemas, shipped with the package.

Rule: no imports of `reconciler`; any layer may read these files. Validation of
manifests (layer 1) and the sandbox (layer 8) parse against the same copy.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@cache
def load(relative: str) -> Any:
    """The parsed schema at `relative`, e.g. `pachyderm/pps_v2.CreatePipelineRequest...`."""
    return json.loads((HERE / relative).read_text(encoding="utf-8"))


CREATE_PIPELINE_REQUEST = "pachyderm/pps_v2.CreatePipelineRequest.schema.json"
