"""`reconciler status`: per target, what is managed, the lock, the last runs, drift."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from reconciler.reconcile import TargetStatus
from reconciler.render.console import console_text
from reconciler.state import LockHolder, RunRecord


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))


def _counts(run: RunRecord, target: str) -> dict[str, int]:
    """The run's action results on `target` alone."""
    mine = (a for a in run.actions or () if str(a.get("id", "")).startswith(f"{target}:"))
    return dict(Counter(str(a.get("status")) for a in mine))


def _tally(status: TargetStatus, facet: str) -> dict[str, int]:
    """How many managed resources are in each sync or health state."""
    counted = Counter(
        r.sync if facet == "sync" else r.health.state for r in status.resources if r.managed
    )
    return dict(sorted(counted.items()))


def _lock_json(lock: LockHolder | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    return {
        "host": lock.host,
        "pid": lock.pid,
        "command": lock.command,
        "revision": lock.revision,
        "since": _when(lock.since),
        "heartbeat": _when(lock.heartbeat),
    }


def as_json(location: str, targets: Sequence[TargetStatus]) -> str:
    body: dict[str, Any] = {"state": location, "targets": {}}
    for status in targets:
        body["targets"][status.target] = {
            "provider": status.provider,
            "url": status.url,
            "managed": {
                "count": len(status.managed),
                "by_kind": dict(sorted(Counter(e.kind for e in status.managed).items())),
                "resources": [
                    {
                        "id": e.id,
                        "kind": e.kind,
                        "adopted": e.adopted,
                        "revision": e.revision,
                        "protect": e.protect,
                        "deletion_policy": e.deletion_policy,
                        "updated_at": _when(e.updated_at),
                    }
                    for e in status.managed
                ],
            },
            "lock": _lock_json(status.lock),
            "runs": [
                {
                    "id": r.id,
                    "command": r.command,
                    "result": r.result,
                    "revision": r.revision,
                    "started_at": _when(r.started_at),
                    "finished_at": _when(r.finished_at),
                    "actions": _counts(r, status.target),
                }
                for r in status.runs
            ],
            "drift": None
            if status.drift is None
            else [
                {"id": str(a.id), "action": a.action, "reasons": list(a.reasons)}
                for a in status.drift
            ],
            "in_sync": status.drift == (),
            "warnings": list(status.warnings),
            "sync": _tally(status, "sync"),
            "health": _tally(status, "health"),
            "resources": [r.to_json() for r in status.resources],
            "suspended": status.suspended.to_json() if status.suspended else None,
            "error": status.error,
        }
    return json.dumps(body, indent=2)


def print_text(location: str, targets: Sequence[TargetStatus], console: Console) -> None:
    console.print(f"state: {console_text(location)}")
    for status in targets:
        console.print()
        kinds = Counter(e.kind for e in status.managed)
        by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing yet"
        console.print(
            f"[bold]{console_text(status.target)}[/bold]"
            f" ({status.provider}, {console_text(status.url)}):"
            f" manages {len(status.managed)}: {by_kind}"
        )
        if status.lock is not None:
            console.print(f"  locked by {console_text(status.lock.describe())}")
        if status.drift is None:
            console.print(f"  [red]drift unknown[/red]: {console_text(status.error or '')}")
        elif not status.drift:
            console.print("  [green]in sync[/green] with the manifests")
        else:
            console.print(f"  [yellow]{len(status.drift)} resource(s) differ[/yellow]:")
            for action in status.drift:
                why = "; ".join(action.reasons)
                console.print(
                    f"    {action.action:<8} {console_text(str(action.id))}: {console_text(why)}"
                )
        if status.suspended is not None:
            suspended = console_text(status.suspended.describe())
            console.print(f"  [yellow]automation {suspended}[/yellow]")
        if status.resources:
            for facet in ("sync", "health"):
                tally = ", ".join(
                    f"{n} {k.replace('_', ' ')}" for k, n in _tally(status, facet).items()
                )
                console.print(f"  {facet}: {console_text(tally)}")
            for resource in status.resources:
                if resource.managed and resource.health.state in ("degraded", "progressing"):
                    colour = "red" if resource.health.state == "degraded" else "yellow"
                    console.print(
                        f"    [{colour}]{resource.health.state:<11}[/{colour}]"
                        f" {console_text(str(resource.id))}: {console_text(resource.health.reason)}"
                    )
        for warning in status.warnings:
            console.print(f"  [yellow]warning[/yellow]: {console_text(warning)}")
        if not status.runs:
            console.print("  no runs yet")
            continue
        table = Table(show_edge=False, header_style="bold", pad_edge=False)
        for column in ("run", "started (UTC)", "result", "revision", "actions"):
            table.add_column(column)
        for run in status.runs:
            counts = _counts(run, status.target)
            done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "-"
            table.add_row(str(run.id), _when(run.started_at), run.result, run.revision or "-", done)
        console.print(table)
