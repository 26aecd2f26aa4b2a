"""The sandbox's web app: both platforms under one URL, its stats, and fault injection."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.sandbox.pachyderm import RPCS, GrpcError, Pachd, rpc
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


def create_app(db: Path | str, options: SandboxOptions = SandboxOptions()) -> Starlette:
    store = Store(db)
    pachd = Pachd(store)
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
        store.count("calls", call)
        store.count("kinds", "mutating" if mutates else "reads")
        injected = await _faults(options, chance)
        if injected is not None:
            return injected
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return _grpc_error(GrpcError(3, "request body is not JSON"))
        if not isinstance(body, dict):
            return _grpc_error(GrpcError(3, "request body must be a JSON object"))
        try:
            with store.transaction():
                answer = handler(body)
        except GrpcError as exc:
            return _grpc_error(exc)
        if streams:
            lines = "".join(json.dumps({"result": item}) + "\n" for item in answer)
            return Response(lines, media_type="application/json")
        return JSONResponse(answer)

    async def stats(request: Request) -> Response:
        return JSONResponse(stats_of(store))

    async def reset(request: Request) -> Response:
        store.reset_counters()
        return JSONResponse(stats_of(store))

    return Starlette(
        routes=[
            Route("/api/{rpc:path}", pachyderm, methods=["POST"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
        ]
    )


def stats_of(store: Store) -> dict[str, Any]:
    kinds = store.counters("kinds")
    return {
        "reads": kinds.get("reads", 0),
        "mutating": kinds.get("mutating", 0),
        "calls": store.counters("calls"),
        "restarts": {f"pachyderm:{k}": v for k, v in store.counters("restarts").items()},
    }


async def _faults(options: SandboxOptions, chance: random.Random) -> Response | None:
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)
    if options.fail_rate and chance.random() < options.fail_rate:
        kind = chance.choice(("500", "503", "429", "reset"))
        if kind == "reset":
            return _Reset()
        if kind == "429":
            return JSONResponse(
                {"code": 8, "message": "injected: too many requests", "details": []},
                429,
                headers={"retry-after": "0"},
            )
        if kind == "503":
            return JSONResponse(
                {"code": 14, "message": "injected: unavailable", "details": []}, 503
            )
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


def _grpc_error(error: GrpcError) -> Response:
    status = HTTP_STATUS.get(error.code, 500)
    return JSONResponse({"code": error.code, "message": error.message, "details": []}, status)
