"""`reconciler serve --config FILE`: many sources in one service.

Each source (listed, or generated from the folders of a repository that hold a
`reconciler.yaml`) is served as `reconciler serve SOURCE` serves one: its own runner,
schedule, state, locks, run history, notifications and UI, mounted at
`/sources/<name>/` (its webhooks at `/sources/<name>/hooks/github`, `/gitlab`,
`/generic`, each with the secrets the configuration names). Runs of different sources go
on at once, at most `parallel_runs` of them; one source's invalid commit or failing
target fails that source's run alone. `/` lists the sources with their sync, health and
last run; `/metrics` is every source's metrics with a `source` label; `/status` sums up.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler import checkout
from reconciler.checkout import Origin, default_branch
from reconciler.errors import InputError, Problem
from reconciler.manifests.config import CONFIG_FILE
from reconciler.manifests.serve_config import Behaviour, GitGenerator, ServeConfig, SourceSpec
from reconciler.reconcile import Connector
from reconciler.server.app import Server, healthz, lifespan, source_routes
from reconciler.server.logs import event
from reconciler.server.metrics import CONTENT_TYPE, merged
from reconciler.server.replicas import Replicas, replica_id
from reconciler.server.runs import ServeOptions
from reconciler.server.schedule import Cron, Every, Schedule, parse_interval
from reconciler.server.sessions import Sessions
from reconciler.server.ui import UI
from reconciler.state import KeptStores, open_store, suspension_of
from reconciler.state.leases import LeaseStore

log = logging.getLogger("reconciler.server")

SKIPPED = {".git", checkout.STATE_FOLDER, "node_modules"}
STATIC = Path(__file__).parent / "static"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class LeftOut:
    """A folder a generator found and does not serve, and why."""

    generator: str
    folder: str
    name: str
    why: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def generated_name(generator: str, folder: str) -> str:
    """`<generator>-<folder>`, `/` and anything else but letters and digits as `-`, at
    most 48 characters; the root folder: `<generator>`."""
    if not folder:
        return generator
    return f"{generator}-{_slug(folder)}"[:48].rstrip("-")


def generated(
    generator: GitGenerator, git: checkout.Git | None = None
) -> tuple[list[SourceSpec], list[LeftOut]]:
    """One source per folder of the generator's repository holding a reconciler.yaml,
    and the folders that cannot be one (left out: whoever commits to that repository
    must not stop the service's other sources)."""
    fetched = checkout.fetch(Origin.parse(generator.url, generator.ref), git)
    found: list[SourceSpec] = []
    left: list[LeftOut] = []
    behaviour = generator.model_dump(include=set(Behaviour.model_fields), exclude_none=True)
    for config in sorted(fetched.folder.rglob(CONFIG_FILE)):
        relative = config.parent.relative_to(fetched.folder)
        if any(part in SKIPPED for part in relative.parts):
            continue
        folder = relative.as_posix() if relative.parts else ""
        if not any(fnmatch.fnmatchcase(folder or ".", glob) for glob in generator.folders):
            continue
        name = generated_name(generator.name, folder)
        try:
            spec = SourceSpec.model_validate(
                {**behaviour, "name": name, "url": generator.url, "ref": generator.ref}
                | {"folder": folder}
            )
        except ValidationError as exc:
            why = "; ".join(str(e["msg"]) for e in exc.errors(include_url=False)[:3])
            left.append(LeftOut(generator.name, folder, name, f"not a usable source: {why}"))
            continue
        found.append(spec)
    return found, left


def sources_of(
    config: ServeConfig, git: checkout.Git | None = None
) -> tuple[list[SourceSpec], list[LeftOut]]:
    """The listed sources and the generated ones. A generated name that a listed source
    or another folder also takes is left out, each of them (which folder came first
    cannot be told, and a source must not change hands); a listed name made twice is an
    input error."""
    listed = list(config.sources)
    twice = sorted(n for n, count in Counter(s.name for s in listed).items() if count > 1)
    if twice:
        raise InputError(
            [
                Problem(
                    "--config",
                    message=f"sources named twice: {', '.join(twice)}",
                    hint="give every listed source a name of its own",
                )
            ]
        )
    made: list[tuple[str, SourceSpec]] = []
    left: list[LeftOut] = []
    for generator in config.generators:
        specs, unusable = generated(generator, git)
        made.extend((generator.name, spec) for spec in specs)
        left.extend(unusable)
    taken = {spec.name for spec in listed}
    counts = Counter(spec.name for _, spec in made)
    every = list(listed)
    for maker, spec in made:
        if spec.name in taken:
            why = f"its name {spec.name} is a listed source's"
        elif counts[spec.name] > 1:
            others = sorted(s.folder for g, s in made if s.name == spec.name and s is not spec)
            why = f"folder {', '.join(others)} makes the same name {spec.name}"
        else:
            every.append(spec)
            continue
        left.append(LeftOut(maker, spec.folder, spec.name, why))
    if not every:
        raise InputError(
            [
                Problem(
                    "--config",
                    message="no source to serve"
                    + "".join(f"; {o.generator} {o.folder or '.'}: {o.why}" for o in left),
                    hint="list a source, or give a generator a folder holding a reconciler.yaml",
                )
            ]
        )
    return every, left


def options_of(
    spec: SourceSpec,
    config: ServeConfig,
    fallback: ServeOptions,
    environ: Mapping[str, str] | None = None,
) -> ServeOptions:
    """The options `serve` runs one source with: the source's own, else the file's
    defaults, else the command line's."""
    env = os.environ if environ is None else environ
    defaults = config.defaults

    def pick(name: str) -> Any:
        own = getattr(spec, name)
        return own if own is not None else getattr(defaults, name)

    origin = Origin.parse(spec.url, spec.ref)
    location = spec.url
    if spec.folder:
        location = (
            f"{spec.url}//{spec.folder}" if origin.remote else str(Path(spec.url) / spec.folder)
        )
    where = f"source {spec.name}"
    schedule: Schedule = fallback.schedule
    try:
        if pick("schedule"):
            schedule = Cron(pick("schedule"))
        elif pick("interval"):
            schedule = Every(parse_interval(pick("interval")))
    except ValueError as exc:
        raise InputError([Problem("--config", message=f"{where}: {exc}")]) from None
    branch = spec.ref or default_branch(origin) or "main"
    hooks = pick("webhooks")

    def secret(kind: str, default: str) -> str | None:
        name = getattr(hooks, kind, None) if hooks is not None else None
        return env.get(name or default) or None

    mode = pick("mode") or fallback.mode
    return ServeOptions(
        source=location,
        ref=spec.ref,
        branch=branch,
        profile=pick("profile"),
        mode=mode,
        schedule=schedule,
        prune=pick("prune") if pick("prune") is not None else fallback.prune,
        max_deletes=pick("max_deletes")
        if pick("max_deletes") is not None
        else fallback.max_deletes,
        allow_mass_delete=fallback.allow_mass_delete,
        lock_timeout=fallback.lock_timeout,
        concurrency=fallback.concurrency,
        github_secret=secret("github", "RECONCILER_GITHUB_SECRET"),
        gitlab_token=secret("gitlab", "RECONCILER_GITLAB_TOKEN"),
        generic_token=secret("generic", "RECONCILER_WEBHOOK_TOKEN"),
        ui_token=fallback.ui_token,
        ui_public=fallback.ui_public,
    )


class Fleet:
    """The sources of one service and what they share: the UI's sessions, the gate on
    runs at once."""

    def __init__(
        self,
        config: ServeConfig,
        specs: list[SourceSpec],
        connect: Connector,
        fallback: ServeOptions,
        environ: Mapping[str, str] | None = None,
        left_out: list[LeftOut] | None = None,
    ) -> None:
        self.config = config
        self.left_out = list(left_out or ())
        """Folders the generators found and do not serve (shown on `/` and `/status`)."""
        self.sessions = Sessions(fallback.ui_token or fallback.generic_token, fallback.ui_public)
        self.servers: dict[str, Server] = {}
        gate = asyncio.Semaphore(config.parallel_runs)
        self.stores = KeptStores(open_store, config.kept_state_connections)
        for spec in specs:
            server = Server(options_of(spec, config, fallback, environ), connect)
            server.runner.gate = gate
            server.runner.stores = self.stores
            self.servers[spec.name] = server
        self.uis = {name: UI(server, self.sessions) for name, server in self.servers.items()}

    def summary(self, name: str) -> dict[str, Any]:
        server = self.servers[name]
        if server.view is not None:
            server.view()  # a replica: what the source's owner published
        runner = server.runner
        statuses = runner.resources.statuses if runner.resources is not None else ()
        managed = [s for s in statuses if s.managed]
        with self.uis[name].store() as store:
            suspensions = store.suspensions() if store is not None else {}
        suspended = sorted(t for t in runner.targets if suspension_of(suspensions, t))
        return {
            "name": name,
            "source": server.source_shown,
            "mode": server.options.mode,
            "targets": list(runner.targets),
            "synced": sum(1 for s in managed if s.sync == "synced"),
            "out_of_sync": sum(1 for s in managed if s.sync in ("out_of_sync", "missing")),
            "degraded": sum(1 for s in managed if s.health.state == "degraded"),
            "managed": len(managed),
            "last_run": runner.last.to_json() if runner.last else None,
            "running": runner.current is not None,
            "suspended": suspended,
        }


def create_fleet_app(
    config: ServeConfig,
    connect: Connector,
    fallback: ServeOptions,
    *,
    environ: Mapping[str, str] | None = None,
    git: checkout.Git | None = None,
) -> Starlette:
    specs, left_out = sources_of(config, git)
    for out in left_out:
        event(log, "source left out", logging.WARNING, **out.to_json())
    fleet = Fleet(config, specs, connect, fallback, environ, left_out)
    first = next(iter(fleet.servers))
    replicas = _replicas(config, fleet)

    async def sources(request: Request) -> Response:
        if not fleet.sessions.may_read(request):
            return RedirectResponse(f"/sources/{first}/login?next=/", status_code=303)
        ui = fleet.uis[first]
        rows = [fleet.summary(name) for name in fleet.servers]
        return ui.render(
            request, "sources.html", rows=rows, left_out=fleet.left_out, started=time.time()
        )

    async def readyz(request: Request) -> Response:
        if replicas is not None:
            # Ready while the coordination database answers: a replica that cannot
            # reach it serves no source (its leases lapse) and takes no traffic.
            ready = replicas.healthy and not replicas.stopping
        else:
            ready = all(s.worker.started and not s.worker.stopping for s in fleet.servers.values())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        for name, server in fleet.servers.items():
            with fleet.uis[name].store() as store:
                if store is not None:
                    server.metrics.state(
                        server.runner.targets, store.suspensions(), store.locks(), time.time()
                    )
        body = merged({name: s.metrics for name, s in fleet.servers.items()})
        return Response(body, media_type=CONTENT_TYPE)

    async def status(request: Request) -> Response:
        return JSONResponse(
            {
                "sources": {name: fleet.summary(name) for name in fleet.servers},
                "left_out": [out.to_json() for out in fleet.left_out],
            }
        )

    routes: list[BaseRoute] = [
        Route("/", sources),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/status", status),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *(
            Mount(f"/sources/{name}", routes=source_routes(server, fleet.sessions))
            for name, server in fleet.servers.items()
        ),
    ]
    if replicas is None:
        span = lifespan(list(fleet.servers.values()))
    else:
        span = replicated(replicas, list(fleet.servers.values()))
    app = Starlette(routes=routes, lifespan=span)
    app.state.fleet = fleet
    app.state.replicas = replicas
    return app


def _replicas(config: ServeConfig, fleet: Fleet) -> Replicas | None:
    if config.coordination is None:
        return None
    try:
        lease = parse_interval(config.coordination.lease)
        tick = parse_interval(config.coordination.tick)
    except ValueError as exc:
        raise InputError([Problem("--config", message=f"coordination: {exc}")]) from None
    if tick * 3 > lease:
        raise InputError(
            [
                Problem(
                    "--config",
                    message=f"coordination: a tick of {tick:g}s leaves too little of a"
                    f" {lease:g}s lease",
                    hint="make the lease at least three ticks",
                )
            ]
        )
    leases = LeaseStore(config.coordination.database, replica_id(), lease)
    return Replicas(fleet.servers, leases, lease=lease, tick=tick)


def replicated(
    replicas: Replicas, servers: list[Server]
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The lifespan of a replica: its share of the sources claimed and served; at
    shutdown, runs in flight finish and the leases go back."""

    @asynccontextmanager
    async def span(app: Starlette) -> AsyncIterator[None]:
        await replicas.start()
        try:
            yield
        finally:
            await replicas.stop()
            for server in servers:
                server.runner.close()
            await asyncio.gather(*(s.notifier.aclose() for s in servers))
            event(log, "stopped")

    return span
