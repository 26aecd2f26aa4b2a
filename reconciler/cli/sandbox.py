"""`reconciler sandbox serve | stats`: the platforms' emulator, over HTTP or at rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from reconciler.errors import InputError, Problem
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.app import stats_of
from reconciler.sandbox.store import Store
from reconciler.targets import sandbox_db

app = typer.Typer(
    help="The embedded sandbox: both platforms' APIs, emulated, persisted in SQLite.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    db: Annotated[
        Path, typer.Option("--db", help="The SQLite file that holds the sandbox's state.")
    ] = Path(".reconciler/sandbox.db"),
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Added to every API call.", min=0)
    ] = 0.0,
    fail_rate: Annotated[
        float,
        typer.Option(
            "--fail-rate", help="Share of API calls answered 500, 503 or 429.", min=0, max=1
        ),
    ] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for fault injection.")] = None,
) -> int:
    """Serve the sandbox over HTTP: Pachyderm under /api, stats under /_sandbox/stats.

    Point a target at it with `url: http://127.0.0.1:PORT`.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    sandbox = create_app(db, SandboxOptions(latency_ms=latency_ms, fail_rate=fail_rate, seed=seed))
    err.print(f"sandbox on http://{host}:{port} (state in {db}); Ctrl-C stops it", markup=False)
    uvicorn.run(sandbox, host=host, port=port, log_level="warning")
    return 0


@app.command()
def stats(
    path: Annotated[
        Path, typer.Argument(help="The manifests folder whose embedded sandbox to read.")
    ] = Path(),
    reset: Annotated[bool, typer.Option("--reset", help="Zero the counters after.")] = False,
) -> int:
    """Print the embedded sandbox's call counters as JSON: reads, mutating, restarts."""
    root = path if path.is_dir() else path.parent
    db = sandbox_db(root)
    if not db.is_file():
        raise InputError(
            [
                Problem(
                    str(db),
                    message="no embedded sandbox here yet",
                    hint="run `reconciler plan` or `apply` on this folder first",
                )
            ]
        )
    store = Store(db)
    try:
        out.print(json.dumps(stats_of(store), indent=2, sort_keys=True), markup=False)
        if reset:
            store.reset_counters()
    finally:
        store.close()
    return 0
