"""The sandbox's web app: both platforms under one URL, its stats, and fault injection.

Pachyderm answers under `/api`, the kdb Insights Package Manager under `/packagemanager`
(routes read from the API contract), Keycloak-like tokens under `/auth/realms/...` and
`/realms/...`, the contract itself at `/openapi`, and the sandbox's own controls under
`/_sandbox`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler import schemas
from reconciler.sandbox.insights import ApiError, Call, InsightsOptions, PackageManager
from reconciler.sandbox.pachyderm import RPCS, GrpcError, Pachd, PachydermOptions, rpc
from reconciler.sandbox.store import Store

# grpc-gateway's mapping of gRPC codes to HTTP statuses.
HTTP_STATUS = {3: 400, 5: 404, 6: 409, 7: 403, 9: 400, 10: 409, 14: 503, 16: 401}


@dataclass(frozen=True)
class SandboxOptions:
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    """The share of API calls that fail: an injected 500, 503, 429, or a connection
    dropped halfway through the answer (a reset, as a client sees it)."""
    seed: int | None = None
    insights: InsightsOptions = field(default_factory=InsightsOptions)
    pachyderm: PachydermOptions = field(default_factory=PachydermOptions)


def create_app(
    db: Path | str,
    options: SandboxOptions = SandboxOptions(),
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """The sandbox; `clock` (wall-clock seconds) lets tests move time for tokens and
    deployments."""
    store = Store(db)
    pachd = Pachd(store, options.pachyderm, *((clock,) if clock else ()))
    manager = PackageManager(store, options.insights, *((clock,) if clock else ()))
    chance = random.Random(options.seed)

    async def pachyderm(request: Request) -> Response:
        path = request.path_params["rpc"]
        call = f"POST /api/{path}"
        handler = rpc(pachd, path)
        if handler is None:
            return JSONResponse(
                {"code": 12, "message": f"unknown method {path}", "details": []}, 501
            )
        streams, mutates = RPCS[path][1], RPCS[path][2]
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        # A dry run (CreatePipelineV2, Set*Defaults) changes nothing: counted as a read.
        dry = isinstance(body, dict) and bool(body.get("dryRun"))
        store.count("calls", call)
        store.count("kinds", "mutating" if mutates and not dry else "reads")
        injected = await _faults(options, chance, _stream_fault if streams else _grpc_fault)
        if injected is not None:
            return injected
        if body is None:
            return _grpc_error(GrpcError(3, "request body is not JSON"))
        if not isinstance(body, dict):
            return _grpc_error(GrpcError(3, "request body must be a JSON object"))
        failure: GrpcError | None = None
        try:
            with store.transaction():
                try:
                    answer = handler(body)
                except GrpcError as exc:
                    if not exc.commit:
                        raise
                    failure = exc  # what the call did before failing stays done
        except GrpcError as exc:
            return _grpc_error(exc, stream=streams)
        if failure is not None:
            return _grpc_error(failure, stream=streams)
        if streams:
            lines = "".join(json.dumps({"result": item}) + "\n" for item in answer)
            return Response(lines, media_type="application/json")
        return JSONResponse(answer)

    def insights(operations: dict[str, schemas.Operation]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            operation = operations[request.method]
            body = await request.body()
            call = Call(
                dict(request.path_params), dict(request.query_params), body, request.headers
            )
            try:
                manager.authorise(call.headers)
            except ApiError as exc:
                store.count("refused", f"{operation.method} {operation.path}")
                return JSONResponse(exc.body(options.insights.error_shape), exc.status)
            store.count("calls", f"{operation.method} {operation.path}")
            store.count("kinds", "mutating" if operation.mutates else "reads")
            injected = await _faults(options, chance, _detail_fault)
            if injected is not None:
                return injected
            try:
                with store.transaction():
                    status, answer = getattr(manager, operation.id)(call)
            except ApiError as exc:
                return JSONResponse(exc.body(options.insights.error_shape), exc.status)
            if answer is None:
                return Response(status_code=status)
            if isinstance(answer, bytes):  # an archive
                return Response(answer, status, media_type="application/octet-stream")
            # The client's answers are `Value` wrappers (NOTES.md): the payload is `data`.
            return JSONResponse({"data": answer}, status)

        return endpoint

    async def token(request: Request) -> Response:
        # urlencoded by hand: Starlette's form parser needs python-multipart for this.
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if request.path_params["realm"] != options.insights.realm:
            return JSONResponse({"error": "Realm does not exist"}, 404)
        try:
            with store.transaction():
                return JSONResponse(manager.token(fields))
        except ApiError as exc:
            error = "unauthorized_client" if exc.status == 401 else exc.detail
            return JSONResponse({"error": error, "error_description": exc.detail}, exc.status)

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.load(schemas.PACKAGE_MANAGER))

    async def expire_tokens(request: Request) -> Response:
        with store.transaction():
            return JSONResponse({"expired": manager.expire_tokens()})

    async def stats(request: Request) -> Response:
        return JSONResponse(stats_of(store))

    async def reset(request: Request) -> Response:
        store.reset_counters()
        return JSONResponse(stats_of(store))

    by_path: dict[str, dict[str, schemas.Operation]] = {}
    for operation in schemas.package_manager().values():
        by_path.setdefault(operation.path, {})[operation.method] = operation
    # Fixed segments before parameters: /packages/validate before /packages/{name}.
    ordered = sorted(by_path, key=lambda path: (path.count("{"), path))
    token_path = "/realms/{realm}/protocol/openid-connect/token"
    return Starlette(
        routes=[
            Route("/api/{rpc:path}", pachyderm, methods=["POST"]),
            *(
                Route(path, insights(by_path[path]), methods=list(by_path[path]))
                for path in ordered
            ),
            Route("/auth" + token_path, token, methods=["POST"]),
            Route(token_path, token, methods=["POST"]),
            Route("/openapi", openapi, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/expire-tokens", expire_tokens, methods=["POST"]),
        ]
    )


def stats_of(store: Store) -> dict[str, Any]:
    """Call counts since the last reset; `restarts` holds every pipeline restart and every
    bounced Insights component (`insights:<deployment>/<type>:<name>`); `events` the
    Insights pushes, deploys, hot-loads, teardowns and cleanups; `persisted_data` the
    deployments whose data exists now."""
    kinds = store.counters("kinds")
    restarts = {
        (k if k.startswith("insights:") else f"pachyderm:{k}"): v
        for k, v in store.counters("restarts").items()
    }
    return {
        "reads": kinds.get("reads", 0),
        "mutating": kinds.get("mutating", 0),
        "calls": store.counters("calls"),
        "refused": store.counters("refused"),
        "restarts": restarts,
        "events": store.counters("events"),
        "persisted_data": store.keys("insights.data"),
    }


def _grpc_fault(status: int, code: int, message: str) -> Response:
    return JSONResponse({"code": code, "message": message, "details": []}, status)


def _detail_fault(status: int, code: int, message: str) -> Response:
    return JSONResponse({"detail": message}, status)


async def _faults(
    options: SandboxOptions, chance: random.Random, error: Callable[[int, int, str], Response]
) -> Response | None:
    """An injected failure in the platform's own error style, or None."""
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_rate and chance.random() < options.fail_rate:
        kind = chance.choice(("500", "503", "429", "reset"))
        if kind == "reset":
            return _Reset()
        if kind == "429":
            response = error(429, 8, "injected: too many requests")
            response.headers["retry-after"] = "0"
            return response
        if kind == "503":
            return error(503, 14, "injected: unavailable")
        return Response("injected: internal server error", 500)
    return None


class _Reset(Response):
    """Promises a body, sends half of it, then fails: the server drops the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"64"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"result": ', "more_body": True})
        raise ConnectionResetError("injected: connection reset")


def _grpc_error(error: GrpcError, *, stream: bool = False) -> Response:
    status = HTTP_STATUS.get(error.code, 500)
    body = {"code": error.code, "message": error.message, "details": []}
    # grpc-gateway: a server stream that fails before its first message answers the
    # error's status with the status wrapped in "error".
    return JSONResponse({"error": body} if stream else body, status)


def _stream_fault(status: int, code: int, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "details": []}}, status)
