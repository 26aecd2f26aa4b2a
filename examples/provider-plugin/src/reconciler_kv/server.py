"""The platform: a tiny HTTP key-value store of buckets and keys, kept in one JSON file.

    GET    /v1/buckets                      {"buckets": [{"name", "description"}]}
    PUT    /v1/buckets/{bucket}             {"description"}: create or update
    DELETE /v1/buckets/{bucket}             409 while it holds keys, 404 when missing
    GET    /v1/keys                         {"keys": [{"bucket", "key", "value"}]}
    PUT    /v1/buckets/{bucket}/keys/{key}  {"value"}: 404 when the bucket is missing
    DELETE /v1/buckets/{bucket}/keys/{key}  404 when missing
    GET    /v1/calls                        every changing call so far, in order

Errors answer `{"message": ...}` with their status. `python -m reconciler_kv.server FILE
--port N` serves it; `embedded` is the in-process copy reconciler uses for `url: embedded`.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Store:
    """The buckets, keys and call log in one JSON file, rewritten on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"buckets": {}, "keys": {}, "calls": []}
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, sort_keys=True))
        scratch.replace(self.path)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def create_app(path: Path) -> Starlette:
    store = Store(path)

    async def buckets(request: Request) -> JSONResponse:
        data = store.read()
        listed = [{"name": n, **b} for n, b in sorted(data["buckets"].items())]
        return JSONResponse({"buckets": listed})

    async def keys(request: Request) -> JSONResponse:
        data = store.read()
        listed = [
            {"bucket": b, "key": k, "value": v}
            for b, held in sorted(data["keys"].items())
            for k, v in sorted(held.items())
        ]
        return JSONResponse({"keys": listed})

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse({"calls": store.read()["calls"]})

    async def bucket(request: Request) -> JSONResponse:
        name = request.path_params["bucket"]
        body = await _body(request)
        with store._lock:
            data = store.read()
            if request.method == "PUT":
                description = body.get("description", "")
                if not isinstance(description, str):
                    return _error(400, "description must be a string")
                data["buckets"][name] = {"description": description}
                data["keys"].setdefault(name, {})
            else:
                if name not in data["buckets"]:
                    return _error(404, f"bucket {name} not found")
                if data["keys"].get(name):
                    return _error(409, f"bucket {name} still holds keys")
                del data["buckets"][name]
                data["keys"].pop(name, None)
            data["calls"].append(f"{request.method} bucket {name}")
            store.write(data)
        return JSONResponse({})

    async def key(request: Request) -> JSONResponse:
        name, item = request.path_params["bucket"], request.path_params["key"]
        body = await _body(request)
        with store._lock:
            data = store.read()
            if name not in data["buckets"]:
                return _error(404, f"bucket {name} not found")
            held = data["keys"].setdefault(name, {})
            if request.method == "PUT":
                if not isinstance(body.get("value"), str):
                    return _error(400, "value must be a string")
                held[item] = body["value"]
            else:
                if item not in held:
                    return _error(404, f"key {name}/{item} not found")
                del held[item]
            data["calls"].append(f"{request.method} key {name}/{item}")
            store.write(data)
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/v1/buckets", buckets),
            Route("/v1/keys", keys),
            Route("/v1/calls", calls),
            Route("/v1/buckets/{bucket}", bucket, methods=["PUT", "DELETE"]),
            Route("/v1/buckets/{bucket}/keys/{key}", key, methods=["PUT", "DELETE"]),
        ]
    )


def embedded(folder: Path) -> Starlette:
    """The store reconciler serves in-process for `url: embedded`: `kv.json` in the
    `.reconciler` folder beside the manifests."""
    return create_app(folder / "kv.json")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--port", type=int, default=8470)
    args = parser.parse_args()
    uvicorn.run(create_app(args.file), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
