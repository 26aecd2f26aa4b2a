"""A recording sandbox and the ways to reach it: in-process, or over uvicorn."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn

from reconciler.manifests import Manifests, Settings
from reconciler.manifests.config import TargetConfig
from reconciler.providers.base import Provider
from reconciler.providers.http import Transport, asgi_transport
from reconciler.providers.insights.connection import connect as insights_connect
from reconciler.providers.insights.target import InsightsTarget
from reconciler.providers.pachyderm.connection import connect as pachd_connect
from reconciler.providers.plugin import Connection
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.app import stats_of
from reconciler.sandbox.store import Store

Scope = dict[str, Any]


def connecting(
    target: str,
    config: TargetConfig,
    manifests: Manifests | None = None,
    *,
    transport: Transport | None = None,
    base_url: str | None = None,
    environ: dict[str, str] | None = None,
) -> Connection:
    """What a provider's `connect` is given, as the composition root would make it."""
    if manifests is None:
        settings = Settings((".",), "sqlite://", False, {target: config}, (), (), None)
        manifests = Manifests(Path.cwd(), None, settings, (), (), {})
    return Connection(target, config, manifests, None, environ or {}, transport, base_url)


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: Any
    """Decoded JSON, or the raw bytes of a body that is not JSON (an artifact)."""
    verb: str = "POST"
    query: str = ""

    @property
    def rpc(self) -> str:
        return self.path.removeprefix("/api/")

    @property
    def method(self) -> str:
        return self.rpc.rsplit("/", 1)[-1]


class Recorder:
    """ASGI middleware: every request the sandbox receives, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[Call] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.calls.append(
            Call(
                scope["path"],
                headers,
                _decoded(raw),
                scope["method"],
                scope.get("query_string", b"").decode(),
            )
        )
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        await self.app(scope, replay, send)

    def mutating(self) -> list[Call]:
        """Calls that change a platform (a Package Manager validate changes nothing)."""
        return [
            c
            for c in self.calls
            if (c.path.startswith("/api/") and not c.method.startswith(("List", "Inspect", "Get")))
            or (
                c.path.startswith("/packagemanager/")
                and c.verb != "GET"
                and not c.path.endswith("/validate")
            )
        ]

    def clear(self) -> None:
        self.calls.clear()


def _decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw


class Sandbox:
    """One sandbox database, recorded, reachable as a connector for `run_cli`."""

    def __init__(self, db: Path, options: SandboxOptions | None = None) -> None:
        self.db = db
        self.app = create_app(db, options or SandboxOptions())
        self.recorder = Recorder(self.app)
        self.connector: Sandbox | None = self
        """What tests hand `run_cli`: None when the sandbox is served over HTTP."""
        self.environ: dict[str, str] = {}
        """The environment the Insights provider reads its credentials from."""

    def __call__(self, target: str, config: TargetConfig, manifests: Manifests) -> Provider:
        transport = asgi_transport(self.recorder)
        connection = connecting(
            target, config, manifests, transport=transport, base_url="http://sandbox"
        )
        if isinstance(config, InsightsTarget):
            return insights_connect(replace(connection, environ=self.environ))
        return pachd_connect(connection)

    def stats(self) -> dict[str, Any]:
        store = Store(self.db)
        try:
            return stats_of(store)
        finally:
            store.close()

    def reset(self) -> None:
        store = Store(self.db)
        try:
            store.reset_counters()
        finally:
            store.close()
        self.recorder.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` over real HTTP on a free port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def observe_failures(
    app: Any,
    connect: Callable[[str, Transport | None], Provider],
    *,
    over_http: bool,
    times: int = 12,
) -> list[Exception]:
    """What `times` observations raise through the provider `connect(base_url, transport)`
    makes, against `app` in-process (a transport) or over uvicorn (none)."""
    seen: list[Exception] = []

    async def scenario(url: str | None) -> None:
        transport = None if url else asgi_transport(app)
        provider = connect(url or "http://sb", transport)
        try:
            for _ in range(times):
                try:
                    await provider.observe()
                except Exception as exc:
                    seen.append(exc)
        finally:
            await provider.aclose()

    if over_http:
        with served(app) as url:
            asyncio.run(scenario(url))
    else:
        asyncio.run(scenario(None))
    return seen
