"""`doctor`: every target's own checks, changing nothing."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from reconciler.cli.common import (
    FormatOpt,
    ProfileOpt,
    RefOpt,
    SourceArg,
    ValidateFormat,
    _connector,
    _fetch,
    _load,
    out,
)
from reconciler.reconcile import (
    diagnose,
)
from reconciler.redact import masked


def doctor(
    ctx: typer.Context,
    source: SourceArg = ".",
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    output: FormatOpt = ValidateFormat.text,
) -> int:
    """Check every target: reachable, authenticated, and for kdb Insights, whether the
    instance's /openapi has every operation the provider uses. Changes nothing."""
    manifests = _load(_fetch(source, ref).folder, profile)
    results = asyncio.run(diagnose(manifests, _connector(ctx)))
    healthy = all(check.ok for checks in results.values() for check in checks)
    if output is ValidateFormat.json:
        body = {
            target: [{"check": c.name, "ok": c.ok, "detail": masked(c.detail)} for c in checks]
            for target, checks in results.items()
        }
        out.print(json.dumps({"ok": healthy, "targets": body}, indent=2), markup=False)
        return 0 if healthy else 1
    table = Table(title=None, show_edge=False, header_style="bold")
    for column in ("target", "check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for target, checks in results.items():
        for check in checks:
            table.add_row(target, check.name, "ok" if check.ok else "FAILED", masked(check.detail))
    out.print(table)
    out.print("All checks passed." if healthy else "Some checks failed: see above.")
    return 0 if healthy else 1
