"""`reconciler status`, `reconciler unlock` and `reconciler state migrate`: looking at
and looking after the state store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.common import (
    FormatOpt,
    PathArg,
    ProfileOpt,
    ValidateFormat,
    YesOpt,
    _connector,
    _load,
    confirm,
    out,
)
from reconciler.engine import status as status_of
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.render import status as status_render
from reconciler.state import open_store
from reconciler.state.migrate import copy_state
from reconciler.state.sql import SqlStore

app = typer.Typer(help="Look after the state store.", no_args_is_help=True)


def status(
    ctx: typer.Context,
    path: PathArg = Path(),
    profile: ProfileOpt = None,
    output: FormatOpt = ValidateFormat.text,
    runs: Annotated[int, typer.Option("--runs", min=0, help="Last runs shown per target.")] = 5,
) -> int:
    """Per target: the resources reconciler manages, the lock, the last runs and their
    results, and drift found by a fresh observation (reads only; takes no lock). Exits 1
    when a target cannot be observed."""
    manifests = _load(path, profile)
    store = open_store(manifests.settings.state, manifests.root)
    try:
        targets = asyncio.run(status_of(manifests, _connector(ctx), store, runs=runs))
        location = store.location
    finally:
        store.close()
    if output is ValidateFormat.json:
        out.print(status_render.as_json(location, targets), markup=False)
    else:
        status_render.print_text(location, targets, out)
    return 1 if any(t.drift is None for t in targets) else 0


def unlock(
    target: Annotated[str, typer.Argument(help="The target whose apply lock to remove.")],
    path: PathArg = Path(),
    profile: ProfileOpt = None,
    yes: YesOpt = False,
) -> int:
    """Remove a target's apply lock whoever holds it: for a holder that is gone but was
    not noticed (another host's runner killed less than a minute ago)."""
    manifests = _load(path, profile, variables=False)
    if target not in manifests.settings.targets:
        raise InputError(
            [
                Problem(
                    "reconciler.yaml",
                    message=f"no target '{target}' is configured",
                    hint="one of: " + ", ".join(sorted(manifests.settings.targets)),
                )
            ]
        )
    store = open_store(manifests.settings.state, manifests.root)
    try:
        holder = store.locks().get(target)
        if holder is None:
            out.print(f"target '{target}' is not locked")
            return 0
        out.print(f"target '{target}' is locked by {holder.describe()}", markup=False)
        if not yes:
            confirm("Remove the lock? A run still alive would then race another.", "unlock")
        store.break_lock(target)
        out.print(f"unlocked '{target}'")
        return 0
    finally:
        store.close()


@app.command()
def migrate(
    to: Annotated[
        str, typer.Option("--to", help="The destination, e.g. postgresql://user@host/db.")
    ],
    path: PathArg = Path(),
    profile: ProfileOpt = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="The source state URL (default: the project's `state`)."),
    ] = None,
) -> int:
    """Copy a whole state (inventory, runs, intents) into an empty store, typically the
    embedded SQLite file into PostgreSQL; then point `state:` at the destination."""
    if source is None:
        manifests = _load(path, profile, variables=False)
        source, root = manifests.settings.state, manifests.root
    else:
        root = path if path.is_dir() else path.parent
    origin = open_store(source, root, where="--from")
    try:
        destination = open_store(to, root, where="--to")
        try:
            if not isinstance(origin, SqlStore) or not isinstance(destination, SqlStore):
                raise OperationalError("these stores cannot be copied")
            counts = copy_state(origin, destination)
            target_location = destination.location
        finally:
            destination.close()
    finally:
        origin.close()
    copied = ", ".join(f"{n} {table}" for table, n in counts.items())
    out.print(f"copied {copied} from {origin.location} to {target_location}", markup=False)
    out.print(f"now set in reconciler.yaml:  state: {target_location}", markup=False)
    return 0
