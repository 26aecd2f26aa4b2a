"""`reconciler serve`: webhooks, a schedule and metrics around repeated runs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from reconciler.checkout import Origin, default_branch
from reconciler.cli.common import ProfileOpt, SourceArg, _connector, long_running
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.providers.http import KeptConnections


class ModeChoice(StrEnum):
    plan = "plan"
    apply = "apply"


def serve(
    ctx: typer.Context,
    source: SourceArg = ".",
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            help="With a git URL: the branch to follow (default: the remote's default branch).",
        ),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            help="Push events to this branch trigger a run (default: --ref, else the"
            " remote's default branch, or the local work tree's branch).",
        ),
    ] = None,
    profile: ProfileOpt = None,
    mode: Annotated[
        ModeChoice,
        typer.Option(
            "--mode", help="plan: find and report drift; apply: also repair it (self-heal)."
        ),
    ] = ModeChoice.plan,
    interval: Annotated[
        str,
        typer.Option("--interval", help="Time between scheduled runs (+-10%): 30s, 5m, 1h, 1h30m."),
    ] = "5m",
    cron: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            help="Run at the times of a cron expression instead (UTC): '*/15 * * * *'.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    prune: Annotated[
        bool | None,
        typer.Option("--prune/--no-prune", help="Delete owned resources that left the manifests."),
    ] = None,
    max_deletes: Annotated[int, typer.Option("--max-deletes", min=0)] = 10,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout", min=0, help="Seconds an apply run waits for a target's lock."
        ),
    ] = 300.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 8,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A serve configuration: many sources in one service (README: Running at"
            " scale); SOURCE, --ref, --branch and --profile then belong in it.",
        ),
    ] = None,
    ui_public: Annotated[
        bool,
        typer.Option(
            "--ui-public",
            help="Open the web UI's read-only pages to anyone who reaches the server (its"
            " actions still need the UI token).",
        ),
    ] = False,
) -> int:
    """Reconcile continuously: on webhooks (GitHub, GitLab, generic) and on a schedule,
    one run at a time. Secrets come from the environment: RECONCILER_GITHUB_SECRET,
    RECONCILER_GITLAB_TOKEN, RECONCILER_WEBHOOK_TOKEN (a hook without one answers 404);
    the web UI at / opens with RECONCILER_UI_TOKEN (default: the webhook token).
    Logs are JSON lines on stderr; SIGTERM lets the run in flight finish, then exits."""
    long_running()
    # Imported here, not above: every other command starts faster without the server.
    import uvicorn

    from reconciler.server import ServeOptions, create_app
    from reconciler.server.logs import configure
    from reconciler.server.schedule import Cron, Every, Schedule, parse_interval

    schedule: Schedule
    try:
        schedule = Every(parse_interval(interval))
    except ValueError as exc:
        raise InputError([Problem("--interval", message=str(exc))]) from None
    if cron is not None:
        try:
            schedule = Cron(cron)
        except ValueError as exc:
            raise InputError([Problem("--schedule", message=str(exc))]) from None
    if config_file is not None:
        given = {"SOURCE": source != ".", "--ref": ref, "--branch": branch, "--profile": profile}
        named = [flag for flag, value in given.items() if value]
        if named:
            raise InputError(
                [
                    Problem(
                        ", ".join(named),
                        message=f"{', '.join(named)} and --config both name sources",
                        hint="put them in the serve configuration's sources",
                    )
                ]
            )
    origin = Origin.parse(source, ref)  # a bad source is input: exit 3 before serving
    fleet = None
    if config_file is not None:
        from reconciler.manifests.serve_config import load_serve_config

        fleet = load_serve_config(config_file)  # a bad file is input too, refused here
        branch = "main"  # each source of the file has its own
    if branch is None:
        # A folder outside git has no branch: its pushes cannot be told apart, "main" is
        # as good as any (webhooks name a branch; the schedule runs regardless).
        branch = ref or default_branch(origin) or (None if origin.remote else "main")
        if branch is None:
            raise InputError(
                [
                    Problem(
                        "--branch",
                        message=f"{origin.shown} has no default branch to follow",
                        hint="name the branch whose pushes trigger runs: --branch NAME",
                    )
                ]
            )
    # Bound before anything runs: with the port taken, serve fails having done nothing
    # (uvicorn would bind only after the startup run had applied).
    listening = _bind(host, port)
    options = ServeOptions(
        source=source,
        ref=ref,
        branch=branch,
        profile=profile,
        mode=mode.value,
        schedule=schedule,
        prune=prune,
        max_deletes=max_deletes,
        lock_timeout=lock_timeout,
        concurrency=concurrency,
        github_secret=os.environ.get("RECONCILER_GITHUB_SECRET") or None,
        gitlab_token=os.environ.get("RECONCILER_GITLAB_TOKEN") or None,
        generic_token=os.environ.get("RECONCILER_WEBHOOK_TOKEN") or None,
        ui_token=os.environ.get("RECONCILER_UI_TOKEN") or None,
        ui_public=ui_public,
    )
    configure()
    # A long-running process: connections to the platforms stay open from run to run.
    kept = KeptConnections()
    connector = _connector(ctx, kept)
    if fleet is not None:
        from reconciler.server.fleet import create_fleet_app

        app = create_fleet_app(fleet, connector, options)
    else:
        app = create_app(options, connector)
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    # uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handler that
    # was there before it: make that one a no-op, so a drained shutdown exits 0.
    for received in (signal.SIGTERM, signal.SIGINT):
        signal.signal(received, lambda number, frame: None)

    async def serving() -> None:
        try:
            await uvicorn.Server(config).serve(sockets=[listening])
        finally:
            await kept.aclose()  # on the loop its connections belong to

    asyncio.run(serving())
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise OperationalError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (nothing was run)"
        ) from None
    listening.set_inheritable(True)
    return listening
