"""`reconciler watch`: re-validate and re-plan (or apply) on every saved change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from watchfiles import DefaultFilter, awatch

from reconciler.checkout import local_revision
from reconciler.cli.common import ProfileOpt, _connector, _load, err, long_running, out
from reconciler.errors import InputError, ReconcilerError
from reconciler.execute import ExecuteOptions
from reconciler.manifests import Manifests
from reconciler.plan import Source
from reconciler.reconcile import Connector, Planned, Request, plan_options, reconcile
from reconciler.redact import masked
from reconciler.render import plan as plan_render
from reconciler.render import progress as progress_render
from reconciler.render import validation as validation_render
from reconciler.state import open_store


class _ManifestFilter(DefaultFilter):
    """Editors' and tools' noise left out, and our own writes: the embedded sandbox and a
    SQLite state change on every plan, and would wake the watcher for ever."""

    ignore_dirs = (*DefaultFilter.ignore_dirs, ".reconciler")
    ignore_entity_patterns = (
        *DefaultFilter.ignore_entity_patterns,
        r"\.db(-wal|-shm|-journal)?$",
    )


def watch(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="A manifests folder (or one manifest file).")
    ] = Path(),
    profile: ProfileOpt = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Apply each change as it is saved (no questions asked), not only plan it.",
        ),
    ] = False,
    debounce: Annotated[
        int,
        typer.Option(
            "--debounce", min=50, help="Milliseconds of quiet after a change before a run."
        ),
    ] = 400,
) -> int:
    """Re-validate and re-plan on every change under PATH (with --apply: apply it), showing
    the result in place. Ctrl-C stops."""
    long_running()
    connector = _connector(ctx)
    root = path if path.is_dir() else path.parent
    try:
        asyncio.run(_watch(path, root, profile, apply, debounce, connector))
    except KeyboardInterrupt:
        err.print("stopped watching")
    return 0


async def _watch(
    path: Path, root: Path, profile: str | None, apply: bool, debounce: int, connect: Connector
) -> None:
    # Watch first, then run: a save made during the first run is not lost.
    changed: asyncio.Queue[set[str]] = asyncio.Queue()

    async def listen() -> None:
        async for changes in awatch(root, watch_filter=_ManifestFilter(), debounce=debounce):
            changed.put_nowait({p for _, p in changes})

    listener = asyncio.create_task(listen())
    # The task's first step sets the file watches up (watchfiles' RustNotify), recording
    # every change from then on, before it awaits the first batch.
    await asyncio.sleep(0)
    try:
        await _cycle(path, profile, apply, connect, "start")
        while True:
            paths = await changed.get()
            while not changed.empty():  # saves made during the last run: one run for all
                paths |= changed.get_nowait()
            names = sorted({Path(p).name for p in paths})
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            await _cycle(path, profile, apply, connect, f"changed: {', '.join(names[:5])}{more}")
    finally:
        listener.cancel()


async def _cycle(
    path: Path, profile: str | None, apply: bool, connect: Connector, why: str
) -> None:
    if out.is_terminal:
        out.clear()
    else:
        out.rule(characters="─")
    out.print(f"[dim]{time.strftime('%H:%M:%S')} {why}[/dim]")
    try:
        manifests = await asyncio.to_thread(_load, path, profile)
        await _plan(manifests, apply, connect)
    except InputError as exc:
        out.print(masked(validation_render.problems_text(exc.problems)), markup=False)
        out.print("[red]invalid[/red]: fix the above and save; nothing was contacted")
    except ReconcilerError as exc:
        out.print(masked(f"error: {exc}"), markup=False)
    mode = "applying" if apply else "planning"
    out.print(f"[dim]watching {path} ({mode} on change; Ctrl-C stops)[/dim]")


async def _plan(manifests: Manifests, apply: bool, connect: Connector) -> None:
    settings = manifests.settings
    revision = await asyncio.to_thread(local_revision, manifests.root)

    def shown(planned: Planned, recovered: tuple[str, ...]) -> bool:
        plan_render.print_text(planned.plan, out)
        return True

    request = Request(
        "apply" if apply else "plan",
        plan_options(settings),
        Source(str(manifests.root), revision, settings.profile),
        execute=ExecuteOptions(revision=revision, profile=settings.profile),
        approve=shown,
        progress=lambda planned: progress_render.Lines(out),
    )
    store = open_store(settings.state, manifests.root)
    try:
        result = await reconcile(manifests, connect, store, request)
    finally:
        store.close()
    if result.outcome is not None:
        out.print(progress_render.summary(result.outcome))
    elif not apply:
        plan_render.print_text(result.planned.plan, out)
