"""Validation results: problems and summaries, for people and for machines."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from reconciler.errors import Problem
from reconciler.manifests import Manifests


def problems_text(problems: tuple[Problem, ...]) -> str:
    count = len(problems)
    body = "\n".join(f"error: {p.format()}" for p in problems)
    return f"{body}\n\n{count} problem{'s' if count != 1 else ''} found; nothing was contacted."


def problems_json(problems: tuple[Problem, ...]) -> str:
    return json.dumps(
        {
            "valid": False,
            "problems": [
                {
                    "file": p.file,
                    "line": p.line,
                    "column": p.column,
                    "message": p.message,
                    "hint": p.hint,
                }
                for p in problems
            ],
        },
        indent=2,
    )


def counts(manifests: Manifests) -> dict[str, dict[str, int]]:
    """Resources per target and kind, both sorted."""
    tally: Counter[tuple[str, str]] = Counter((r.target, r.kind) for r in manifests.resources)
    result: dict[str, dict[str, int]] = {}
    for (target, kind), number in sorted(tally.items()):
        result.setdefault(target, {})[kind] = number
    return result


def summary_json(manifests: Manifests, selected: set[str] | None) -> str:
    data: dict[str, Any] = {
        "valid": True,
        "files": len(manifests.files),
        "profile": manifests.settings.profile,
        "counts": counts(manifests),
        "resources": [
            {
                "id": str(r.id),
                "file": r.origin.file,
                "line": r.origin.line,
                **({"selected": str(r.id) in selected} if selected is not None else {}),
            }
            for r in sorted(manifests.resources, key=lambda r: str(r.id))
        ],
    }
    return json.dumps(data, indent=2)
