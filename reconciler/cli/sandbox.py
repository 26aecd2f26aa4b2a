"""`reconciler sandbox serve | stats`: the platforms' emulator, over HTTP or at rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reconciler.cli.common import long_running
from reconciler.compose import sandbox_db
from reconciler.errors import InputError, Problem
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.app import stats_of
from reconciler.sandbox.insights import InsightsOptions
from reconciler.sandbox.pachyderm import PachydermOptions
from reconciler.sandbox.store import Store

app = typer.Typer(
    help="The embedded sandbox: both platforms' APIs, emulated, persisted in SQLite.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
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
    clients: Annotated[
        list[str] | None,
        typer.Option(
            "--insights-client",
            help="ID:SECRET of a Keycloak client; with any, Insights calls need a token.",
        ),
    ] = None,
    token_ttl: Annotated[
        float, typer.Option("--token-ttl", help="Seconds an Insights token lives.", min=1)
    ] = 300.0,
    deploy_delay: Annotated[
        float,
        typer.Option(
            "--deploy-delay", help="Seconds an Insights deployment stays Initializing.", min=0
        ),
    ] = 0.2,
    cluster_defaults: Annotated[
        str | None,
        typer.Option(
            "--cluster-defaults",
            help="pachd's cluster defaults for a new sandbox: a JSON file of a"
            " ClusterDefaults, or `none`; default: the ones every 2.8+ install has.",
        ),
    ] = None,
    kube_secrets: Annotated[
        list[str] | None,
        typer.Option(
            "--kube-secret",
            help="NAME:KEY,KEY... a Kubernetes secret made out of band (kubectl, Helm):"
            " pipelines may use it, ListSecret does not show it.",
        ),
    ] = None,
    crash_images: Annotated[
        list[str] | None,
        typer.Option("--crash-image", help="Pipelines with this image go PIPELINE_CRASHING."),
    ] = None,
    start_delay: Annotated[
        float,
        typer.Option("--start-delay", min=0, help="Seconds a pipeline stays PIPELINE_STARTING."),
    ] = 0.05,
) -> int:
    """Serve the sandbox over HTTP: Pachyderm under /api, kdb Insights under
    /packagemanager (tokens under /auth/realms/...), stats under /_sandbox/stats.

    Point a target at it with `url: http://127.0.0.1:PORT`.
    """
    known: dict[str, str] = {}
    for client in clients or []:
        client_id, colon, secret = client.partition(":")
        if not colon or not client_id or not secret:
            raise InputError(
                [
                    Problem(
                        "--insights-client",
                        message=f"'{client}' is not ID:SECRET",
                        hint="write the client id, a colon, and its secret",
                    )
                ]
            )
        known[client_id] = secret
    db.parent.mkdir(parents=True, exist_ok=True)
    insights = InsightsOptions(deploy_delay=deploy_delay, clients=known, token_ttl=token_ttl)
    pachyderm = PachydermOptions(
        cluster_defaults=_cluster_defaults(cluster_defaults),
        start_delay=start_delay,
        crash_images=frozenset(crash_images or ()),
        kube_secrets=dict(_kube_secret(text) for text in kube_secrets or ()),
    )
    options = SandboxOptions(
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        insights=insights,
        pachyderm=pachyderm,
    )
    sandbox = create_app(db, options)
    err.print(f"sandbox on http://{host}:{port} (state in {db}); Ctrl-C stops it", markup=False)
    import uvicorn  # here: every other command starts faster without it

    long_running()

    uvicorn.run(sandbox, host=host, port=port, log_level="warning")
    return 0


def _cluster_defaults(given: str | None) -> str | None:
    if given is None:
        return PachydermOptions().cluster_defaults
    if given == "none":
        return None
    try:
        text = Path(given).read_text(encoding="utf-8")
        if not isinstance(json.loads(text), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise InputError(
            [
                Problem(
                    "--cluster-defaults",
                    message=f"{given}: not a readable JSON ClusterDefaults ({exc})",
                    hint='write {"createPipelineRequest": {...}} to a file, or pass none',
                )
            ]
        ) from None
    return text


def _kube_secret(text: str) -> tuple[str, tuple[str, ...]]:
    name, colon, keys = text.partition(":")
    if not name or not colon:
        raise InputError([Problem("--kube-secret", message=f"'{text}' is not NAME:KEY[,KEY...]")])
    return name, tuple(k for k in keys.split(",") if k)


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
