"""`reconciler status`, `reconciler unlock` and `reconciler state migrate`: looking at
and looking after the state store."""

from __future__ import annotations

import asyncio
import socket
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
    require_target,
)
from reconciler.errors import InputError, OperationalError
from reconciler.manifests import LoadOptions, Settings, load_configuration
from reconciler.reconcile import status as status_of
from reconciler.reconcile import stored_status
from reconciler.render import status as status_render
from reconciler.state import open_store
from reconciler.state.locks import alive
from reconciler.state.migrate import copy_state
from reconciler.state.sql import SqlStore

app = typer.Typer(
    help="Look after the state store.", no_args_is_help=True, rich_markup_mode="markdown"
)


def status(
    ctx: typer.Context,
    path: PathArg = Path(),
    profile: ProfileOpt = None,
    output: FormatOpt = ValidateFormat.text,
    runs: Annotated[int, typer.Option("--runs", min=0, help="Last runs shown per target.")] = 5,
) -> int:
    """Per target: the resources reconciler manages, the lock, the last runs and their
    results, and drift found by a fresh observation (reads only; takes no lock). Exits 1
    when a target cannot be observed. When the manifests do not load, shows what the
    configuration and the state say (no drift), and exits 1."""
    try:
        manifests = _load(path, profile)
    except InputError as exc:
        root, settings = _configuration(path, profile)
        first = exc.problems[0].format().splitlines()[0] if exc.problems else str(exc)
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        why = f"the manifests do not load, so drift is not known: {first}{more}"
        store = open_store(settings.state, root)
        try:
            targets = stored_status(settings, store, None, why, runs=runs)
            location = store.location
        finally:
            store.close()
    else:
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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove the lock even though its holder is a live process on this host.",
        ),
    ] = False,
) -> int:
    """Remove a target's apply lock: for a holder that is gone but was not noticed
    (another host's runner killed less than a minute ago). Needs only reconciler.yaml
    and the state, so manifests that do not load never block it. A holder alive on this
    host is refused unless --force."""
    root, settings = _configuration(path, profile)
    require_target(settings, target, "reconciler.yaml")
    store = open_store(settings.state, root)
    try:
        holder = store.locks().get(target)
        if holder is None:
            out.print(f"target '{target}' is not locked")
            return 0
        out.print(f"target '{target}' is locked by {holder.describe()}", markup=False)
        if holder.host == socket.gethostname() and alive(holder.pid) and not force:
            raise OperationalError(
                f"the holder of '{target}' (pid {holder.pid}) is alive on this host: let it"
                f" finish, or stop it first; --force removes the lock anyway, and the two"
                " runs would then race (the lock was kept)"
            )
        if not yes:
            confirm("Remove the lock? A run still alive would then race another.", "unlock")
        store.break_lock(target)
        out.print(f"unlocked '{target}' (it was held by {holder.describe()})", markup=False)
        return 0
    finally:
        store.close()


def _configuration(path: Path, profile: str | None) -> tuple[Path, Settings]:
    """reconciler.yaml alone, its references left unread until used."""
    return load_configuration(path, LoadOptions(profile=profile))


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
        root, settings = _configuration(path, profile)
        source = settings.state
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
