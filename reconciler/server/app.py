"""The routes of `reconciler serve`, and the lifespan that runs and drains the worker.

    POST /hooks/github   X-Hub-Signature-256 (HMAC-SHA256 of the body); push events on the
                         tracked branch trigger a run, ping is answered, others ignored
    POST /hooks/gitlab   X-Gitlab-Token; Push Hook events on the tracked branch
    POST /hooks/generic  Authorization: Bearer <token>; always triggers a run
    GET  /healthz        the process answers
    GET  /readyz         the worker runs and the server is not shutting down
    GET  /metrics        Prometheus
    GET  /status         JSON: mode, source, the run in flight, pending, next, per target
                         (sync and health counts, what is out of sync or unhealthy),
                         suspensions
    GET  /, /resources, /runs, /graph, POST /actions/...: the web UI (`server.ui`)

Answers: 202 a run is queued (or the event is ignored, with why), 200 ping or a replayed
delivery, 401 bad or missing signature, 404 a hook whose secret is not configured, 413 a
body above 1 MiB, 400 a body that is not JSON.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.checkout import Origin
from reconciler.reconcile import Connector
from reconciler.server import hooks
from reconciler.server.hooks import Deliveries, Trigger, Verdict
from reconciler.server.logs import event
from reconciler.server.metrics import CONTENT_TYPE, Metrics
from reconciler.server.notify import Notifier
from reconciler.server.runs import Runner, ServeOptions
from reconciler.server.schedule import Clock, Worker
from reconciler.server.sessions import Sessions
from reconciler.server.ui import UI

log = logging.getLogger("reconciler.server")


class Server:
    """What the routes share: options, the runner, the worker, metrics, deliveries."""

    def __init__(
        self,
        options: ServeOptions,
        connect: Connector,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.metrics = Metrics()
        self.notifier = Notifier(self.metrics, Origin.parse(options.source).shown)
        self.runner = Runner(options, connect, self.metrics, self.notifier)
        self.worker = Worker(self.runner, options.schedule, clock=clock, rng=rng)
        self.deliveries = Deliveries()
        self.started_at = time.time()
        self.source_shown = Origin.parse(options.source).shown
        self.route: Callable[[Trigger], Awaitable[bool]] | None = None
        """Replicas: hands a trigger to the source's owner elsewhere (True), or not."""
        self.view: Callable[[], None] | None = None
        """Replicas: brings in what the owner published, before a page shows the source."""

    async def trigger(self, trigger: Trigger) -> None:
        if self.route is not None and await self.route(trigger):
            event(log, "run requested of the owner", trigger=trigger.reason)
            return
        if self.worker.pending is not None:
            self.metrics.coalesced.inc()
        self.worker.trigger(trigger)
        event(
            log,
            "run queued",
            trigger=trigger.reason,
            revision=trigger.revision,
            delivery=trigger.delivery,
            running=self.worker.running is not None,
        )


def create_app(
    options: ServeOptions,
    connect: Connector,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> Starlette:
    """`reconciler serve SOURCE`: one source, its UI at `/`, its hooks at `/hooks/...`."""
    server = Server(options, connect, clock=clock, rng=rng)
    sessions = Sessions(options.ui_token or options.generic_token, options.ui_public)

    async def readyz(request: Request) -> Response:
        ready = server.worker.started and not server.worker.stopping
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    routes = [
        *source_routes(server, sessions),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    app = Starlette(routes=routes, lifespan=lifespan([server]))
    app.state.server = server
    return app


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def lifespan(servers: Sequence[Server]) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start every source's worker; at shutdown, let each run in flight finish."""

    @asynccontextmanager
    async def span(app: Starlette) -> AsyncIterator[None]:
        for server in servers:
            options = server.options
            event(
                log,
                "serving",
                mode=options.mode,
                source=server.source_shown,
                branch=options.branch,
                schedule=options.schedule.describe(),
            )
            server.worker.start()
        try:
            yield
        finally:
            running = sum(1 for s in servers if s.worker.running is not None)
            event(log, "shutting down", waiting_for_runs=running)
            await asyncio.gather(*(s.worker.stop() for s in servers))
            for server in servers:
                server.runner.close()
            await asyncio.gather(*(s.notifier.aclose() for s in servers))
            event(log, "stopped")

    return span


def source_routes(server: Server, sessions: Sessions) -> list[BaseRoute]:
    """One source's routes: its UI, webhooks, /metrics and /status."""
    options = server.options

    def headed(name: str) -> Callable[[Request], str | None]:
        return lambda request: request.headers.get(name)

    def github_verdict(request: Request, payload: Any, delivery: str | None) -> Verdict:
        kind = request.headers.get("x-github-event", "")
        if kind == "ping":
            return Verdict(None, pong=True)
        return hooks.github_event(kind, payload, options.branch, delivery)

    def gitlab_verdict(request: Request, payload: Any, delivery: str | None) -> Verdict:
        kind = request.headers.get("x-gitlab-event", "")
        return hooks.gitlab_event(kind, payload, options.branch, delivery)

    def generic_verdict(request: Request, payload: Any, delivery: str | None) -> Verdict:
        revision = payload.get("revision") if isinstance(payload, dict) else None
        return Verdict(
            Trigger("generic", revision if isinstance(revision, str) else None, delivery)
        )

    github = _endpoint(
        server,
        _Hook(
            "github",
            "RECONCILER_GITHUB_SECRET",
            options.github_secret,
            lambda secret, body, request: hooks.github_signed(
                secret, body, request.headers.get("x-hub-signature-256")
            ),
            "bad or missing X-Hub-Signature-256",
            headed("x-github-delivery"),
            github_verdict,
        ),
    )
    gitlab = _endpoint(
        server,
        _Hook(
            "gitlab",
            "RECONCILER_GITLAB_TOKEN",
            options.gitlab_token,
            lambda secret, body, request: hooks.token_matches(
                secret, request.headers.get("x-gitlab-token")
            ),
            "bad or missing X-Gitlab-Token",
            headed("x-gitlab-event-uuid"),
            gitlab_verdict,
        ),
    )
    generic = _endpoint(
        server,
        _Hook(
            "generic",
            "RECONCILER_WEBHOOK_TOKEN",
            options.generic_token,
            lambda secret, body, request: hooks.token_matches(
                secret, hooks.bearer(request.headers.get("authorization"))
            ),
            "bad or missing bearer token",
            headed("idempotency-key"),
            generic_verdict,
        ),
    )

    ui = UI(server, sessions)

    async def metrics(request: Request) -> Response:
        with ui.store() as store:
            if store is not None:
                server.metrics.state(
                    server.runner.targets, store.suspensions(), store.locks(), time.time()
                )
        return Response(server.metrics.render(), media_type=CONTENT_TYPE)

    async def status(request: Request) -> Response:
        worker = server.worker
        clock_now = worker.clock.now()
        body = {
            "mode": options.mode,
            "source": Origin.parse(options.source).shown,
            "ref": options.ref,
            "branch": options.branch,
            "schedule": options.schedule.describe(),
            "started_at": server.started_at,
            "pending": worker.pending.reason if worker.pending else None,
            "next_scheduled_in_seconds": round(max(0.0, worker.next_at - clock_now), 3),
            "coalesced_triggers": worker.coalesced,
            **server.runner.status(),
        }
        with ui.store() as store:
            suspended = store.suspensions() if store is not None else {}
        body["suspended"] = {t: s.to_json() for t, s in sorted(suspended.items())}
        return JSONResponse(body)

    routes: list[BaseRoute] = [
        *ui.routes(),
        Route("/hooks/github", github, methods=["POST"]),
        Route("/hooks/gitlab", gitlab, methods=["POST"]),
        Route("/hooks/generic", generic, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/status", status),
    ]
    return routes


async def _body(request: Request) -> bytes | None:
    """The body, or None once it is known to exceed the limit (read no further)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > hooks.MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > hooks.MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class _Hook:
    """One webhook endpoint: its secret, how a request proves it knows it, where the
    delivery id is, and what a payload asks for."""

    name: str
    variable: str
    secret: str | None
    authentic: Callable[[str, bytes, Request], bool]
    refusal: str
    delivery: Callable[[Request], str | None]
    decide: Callable[[Request, Any, str | None], Verdict]


def _endpoint(server: Server, hook: _Hook) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if hook.secret is None:
            return JSONResponse(
                {"error": f"the {hook.name} hook is not configured: set {hook.variable}"},
                status_code=404,
            )
        body = await _body(request)
        if body is None:
            return _refuse(server, hook.name, 413, "body above 1 MiB")
        if not hook.authentic(hook.secret, body, request):
            return _refuse(server, hook.name, 401, hook.refusal)
        delivery = hook.delivery(request)
        # Only an authentic request is remembered: a forgery cannot burn a delivery id.
        if not server.deliveries.first_time(delivery):
            server.metrics.webhooks.labels(hook.name, "replayed").inc()
            event(log, "replayed delivery ignored", hook=hook.name, delivery=delivery)
            return JSONResponse({"ignored": f"delivery {delivery} was already received"})
        try:
            payload = hooks.github_payload(body, request.headers.get("content-type"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            server.metrics.webhooks.labels(hook.name, "bad request").inc()
            event(log, "webhook refused", logging.WARNING, hook=hook.name, status=400, why=str(exc))
            return JSONResponse(
                {"error": "the body is neither JSON nor a form with a JSON payload"},
                status_code=400,
            )
        verdict = hook.decide(request, payload, delivery)
        if verdict.pong:
            server.metrics.webhooks.labels(hook.name, "ping").inc()
            return JSONResponse({"pong": True})
        if verdict.trigger is None:
            server.metrics.webhooks.labels(hook.name, "ignored").inc()
            event(log, "webhook ignored", hook=hook.name, delivery=delivery, why=verdict.ignored)
            return JSONResponse({"ignored": verdict.ignored}, status_code=202)
        server.metrics.webhooks.labels(hook.name, "queued").inc()
        await server.trigger(verdict.trigger)
        revision = verdict.trigger.revision
        return JSONResponse({"queued": True, "revision": revision}, status_code=202)

    return endpoint


def _refuse(server: Server, hook: str, status: int, why: str) -> Response:
    server.metrics.webhooks.labels(hook, str(status)).inc()
    event(log, "webhook refused", logging.WARNING, hook=hook, status=status, why=why)
    return JSONResponse({"error": why}, status_code=status)
