"""The routes of `reconciler serve`, and the lifespan that runs and drains the worker.

    POST /hooks/github   X-Hub-Signature-256 (HMAC-SHA256 of the body); push events on the
                         tracked branch trigger a run, ping is answered, others ignored
    POST /hooks/gitlab   X-Gitlab-Token; Push Hook events on the tracked branch
    POST /hooks/generic  Authorization: Bearer <token>; always triggers a run
    GET  /healthz        the process answers
    GET  /readyz         the worker runs and the server is not shutting down
    GET  /metrics        Prometheus
    GET  /status         JSON: mode, source, the run in flight, pending, next, per target

Answers: 202 a run is queued (or the event is ignored, with why), 200 ping or a replayed
delivery, 401 bad or missing signature, 404 a hook whose secret is not configured, 413 a
body above 1 MiB, 400 a body that is not JSON.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.checkout import Origin
from reconciler.engine import Connector
from reconciler.server import hooks
from reconciler.server.hooks import Deliveries, Trigger, Verdict
from reconciler.server.logs import event
from reconciler.server.metrics import CONTENT_TYPE, Metrics
from reconciler.server.runs import Runner, ServeOptions
from reconciler.server.schedule import Clock, Worker

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
        self.runner = Runner(options, connect, self.metrics)
        self.worker = Worker(self.runner, options.interval, clock=clock, rng=rng)
        self.deliveries = Deliveries()
        self.started_at = time.time()

    def trigger(self, trigger: Trigger) -> None:
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
    server = Server(options, connect, clock=clock, rng=rng)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        event(
            log,
            "serving",
            mode=options.mode,
            source=Origin.parse(options.source).shown,
            branch=options.branch,
            interval_seconds=options.interval,
        )
        server.worker.start()
        try:
            yield
        finally:
            running = server.worker.running is not None
            event(log, "shutting down", waiting_for_run=running)
            await server.worker.stop()
            event(log, "stopped")

    async def github(request: Request) -> Response:
        secret = options.github_secret
        if secret is None:
            return _not_configured("github", "RECONCILER_GITHUB_SECRET")
        body = await _body(request)
        if body is None:
            return _refuse(server, "github", 413, "body above 1 MiB")
        if not hooks.github_signed(secret, body, request.headers.get("x-hub-signature-256")):
            return _refuse(server, "github", 401, "bad or missing X-Hub-Signature-256")
        delivery = request.headers.get("x-github-delivery")
        kind = request.headers.get("x-github-event", "")
        if kind == "ping":
            server.metrics.webhooks.labels("github", "ping").inc()
            return JSONResponse({"pong": True})
        return _push(
            server,
            "github",
            body,
            delivery,
            lambda p: hooks.github_event(kind, p, options.branch, delivery),
        )

    async def gitlab(request: Request) -> Response:
        secret = options.gitlab_token
        if secret is None:
            return _not_configured("gitlab", "RECONCILER_GITLAB_TOKEN")
        body = await _body(request)
        if body is None:
            return _refuse(server, "gitlab", 413, "body above 1 MiB")
        if not hooks.token_matches(secret, request.headers.get("x-gitlab-token")):
            return _refuse(server, "gitlab", 401, "bad or missing X-Gitlab-Token")
        delivery = request.headers.get("x-gitlab-event-uuid")
        kind = request.headers.get("x-gitlab-event", "")
        return _push(
            server,
            "gitlab",
            body,
            delivery,
            lambda p: hooks.gitlab_event(kind, p, options.branch, delivery),
        )

    async def generic(request: Request) -> Response:
        secret = options.generic_token
        if secret is None:
            return _not_configured("generic", "RECONCILER_WEBHOOK_TOKEN")
        body = await _body(request)
        if body is None:
            return _refuse(server, "generic", 413, "body above 1 MiB")
        if not hooks.token_matches(secret, hooks.bearer(request.headers.get("authorization"))):
            return _refuse(server, "generic", 401, "bad or missing bearer token")
        delivery = request.headers.get("idempotency-key")

        def verdict(payload: Any) -> Verdict:
            revision = payload.get("revision") if isinstance(payload, dict) else None
            return Verdict(
                Trigger("generic", revision if isinstance(revision, str) else None, delivery)
            )

        return _push(server, "generic", body or b"{}", delivery, verdict)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        ready = server.worker.started and not server.worker.stopping
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE)

    async def status(request: Request) -> Response:
        worker = server.worker
        clock_now = worker.clock.now()
        body = {
            "mode": options.mode,
            "source": Origin.parse(options.source).shown,
            "ref": options.ref,
            "branch": options.branch,
            "interval_seconds": options.interval,
            "started_at": server.started_at,
            "pending": worker.pending.reason if worker.pending else None,
            "next_scheduled_in_seconds": round(max(0.0, worker.next_at - clock_now), 3),
            "coalesced_triggers": worker.coalesced,
            **server.runner.status(),
        }
        return JSONResponse(body)

    routes = [
        Route("/hooks/github", github, methods=["POST"]),
        Route("/hooks/gitlab", gitlab, methods=["POST"]),
        Route("/hooks/generic", generic, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/status", status),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app


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


def _push(
    server: Server,
    hook: str,
    body: bytes,
    delivery: str | None,
    decide: Callable[[Any], Verdict],
) -> Response:
    if not server.deliveries.first_time(delivery):
        server.metrics.webhooks.labels(hook, "replayed").inc()
        event(log, "replayed delivery ignored", hook=hook, delivery=delivery)
        return JSONResponse({"ignored": f"delivery {delivery} was already received"})
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        server.metrics.webhooks.labels(hook, "bad request").inc()
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    verdict = decide(payload)
    if verdict.trigger is None:
        server.metrics.webhooks.labels(hook, "ignored").inc()
        event(log, "webhook ignored", hook=hook, delivery=delivery, why=verdict.ignored)
        return JSONResponse({"ignored": verdict.ignored}, status_code=202)
    server.metrics.webhooks.labels(hook, "queued").inc()
    server.trigger(verdict.trigger)
    return JSONResponse({"queued": True, "revision": verdict.trigger.revision}, status_code=202)


def _refuse(server: Server, hook: str, status: int, why: str) -> Response:
    server.metrics.webhooks.labels(hook, str(status)).inc()
    event(log, "webhook refused", logging.WARNING, hook=hook, status=status, why=why)
    return JSONResponse({"error": why}, status_code=status)


def _not_configured(hook: str, variable: str) -> Response:
    return JSONResponse(
        {"error": f"the {hook} hook is not configured: set {variable}"}, status_code=404
    )
