"""The HTTP client's retries: reads are retried on retryable failures, writes never
(the executor retries those, each try in the intent log)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.providers import http as http_module
from reconciler.providers.http import FENCE, HttpClient, KeptConnections
from reconciler.retry import Backoff
from reconciler.state.locks import LockLost
from tests.pachyderm.helpers import served

T = TypeVar("T")
QUICK = Backoff(attempts=4, initial=0.001, maximum=0.01)


def client(answers: list[httpx.Response | Exception], seen: list[str]) -> HttpClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return HttpClient(
        "http://platform", platform="p", transport=httpx.MockTransport(handler), reads=QUICK
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_a_read_survives_a_timeout_a_reset_a_503_and_a_429() -> None:
    seen: list[str] = []
    http = client(
        [
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("reset"),
            httpx.Response(503, json={"detail": "unavailable"}),
            httpx.Response(200, json={"items": [1]}),
        ],
        seen,
    )
    assert run(http.request("GET", "/list", read=True)) == {"items": [1]}
    assert len(seen) == 4
    run(http.aclose())


def test_a_read_waits_for_retry_after() -> None:
    seen: list[str] = []
    http = client(
        [httpx.Response(429, headers={"retry-after": "0.2"}), httpx.Response(200, json={})],
        seen,
    )
    started = asyncio.run(_timed(http))
    assert started >= 0.2
    assert len(seen) == 2


async def _timed(http: HttpClient) -> float:
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await http.request("GET", "/list", read=True)
    await http.aclose()
    return loop.time() - begin


def test_a_read_gives_up_after_its_tries_and_a_refusal_is_not_retried() -> None:
    seen: list[str] = []
    http = client([httpx.Response(503, json={"detail": "down"})] * 4, seen)
    with pytest.raises(RetryableError, match="down"):
        run(http.request("GET", "/list", read=True))
    assert len(seen) == 4
    seen.clear()
    refused = client([httpx.Response(403, json={"detail": "forbidden"})], seen)
    with pytest.raises(PermanentError, match="forbidden"):
        run(refused.request("GET", "/list", read=True))
    assert len(seen) == 1


def test_a_write_is_sent_once_whatever_the_failure() -> None:
    seen: list[str] = []
    http = client([httpx.Response(503, json={"detail": "unavailable"})], seen)
    with pytest.raises(RetryableError):
        run(http.request("POST", "/create", body={}))
    assert seen == ["POST /create"]


@pytest.mark.parametrize(
    ("failure", "refused"),
    [
        (httpx.ConnectError("connection refused"), True),
        (httpx.ConnectTimeout("no route"), True),
        (httpx.Response(429, json={"detail": "slow down"}), True),
        (httpx.Response(429, json={"code": 8, "message": "slow down", "details": []}), True),
        (httpx.ReadTimeout("slow"), False),
        (httpx.RemoteProtocolError("peer closed the connection"), False),
        (httpx.Response(504, text="upstream request timeout"), False),
        (httpx.Response(503, json={"code": 14, "message": "unavailable", "details": []}), False),
        (httpx.Response(409, json={"code": 6, "message": "exists", "details": []}), True),
        (httpx.Response(500, json={"code": 13, "message": "internal", "details": []}), False),
    ],
    ids=[
        "connect",
        "connect timeout",
        "429",
        "exhausted",
        "read timeout",
        "reset",
        "504",
        "503",
        "409",
        "internal",
    ],
)
def test_a_failed_write_says_whether_the_platform_may_have_carried_it_out(
    failure: httpx.Response | Exception, refused: bool
) -> None:
    # Only a call that never left, or that was turned away, is known not done: the
    # executor treats a create that failed any other way as possibly made.
    http = client([failure], [])
    with pytest.raises(OperationalError) as raised:
        run(http.request("POST", "/create", body={}))
    assert raised.value.refused is refused


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"detail": "no package trades 1.0.0"}, "no package trades 1.0.0"),
        ({"errorMessage": "no package trades 1.0.0"}, "no package trades 1.0.0"),
        ({"error": "no package trades 1.0.0"}, "no package trades 1.0.0"),
        (
            {"message": "refused", "detail": {"message": "no package trades 1.0.0"}},
            "refused; no package trades 1.0.0",
        ),
        (
            {"detail": [{"loc": ["body", "version"], "msg": "field required"}]},
            "body.version: field required",
        ),
        ({"error": "invalid_client", "error_description": "bad secret"}, "bad secret"),
    ],
    ids=["detail", "errorMessage", "error", "nested", "fastapi", "oauth"],
)
def test_every_error_body_shape_keeps_the_platforms_message(
    body: dict[str, Any], said: str
) -> None:
    """Insights services answer errors in several shapes; the message survives each."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=body)

    client = HttpClient(
        "http://insights", platform="kdb Insights", transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(PermanentError) as caught:
        run(client.request("POST", "/packagemanager/v2/deployments", body={}))
    assert str(caught.value).endswith(f"HTTP 404: {said}")


async def refused_by_the_fence(http: HttpClient) -> None:
    """A mutating POST /call by a replica that lost its lease: refused, nothing sent."""

    def lost() -> None:
        raise LockLost("this replica lost its lease")

    token = FENCE.set(lost)
    try:
        with pytest.raises(LockLost):
            await http.post("/call", {})
    finally:
        FENCE.reset(token)


def test_kept_connections_outlive_a_client_and_stay_fenced() -> None:
    """`serve` keeps connections open from one run's clients to the next's (the same TCP
    connection answers both); a connection taken from the pool still asks the fence
    before it writes, so a replica that lost its lease sends nothing on it."""
    ports: list[int] = []

    async def endpoint(request: Request) -> Response:
        assert request.client is not None
        ports.append(request.client.port)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/call", endpoint, methods=["POST"])])

    async def scenario(url: str) -> None:
        kept = KeptConnections()
        for _ in range(2):  # two runs, each with a client of its own
            http = HttpClient(url, platform="p", kept=kept)
            assert await http.post("/call", {}) == {"ok": True}
            await http.aclose()
        fenced = HttpClient(url, platform="p", kept=kept)
        await refused_by_the_fence(fenced)
        await fenced.aclose()
        await kept.aclose()
        alone = HttpClient(url, platform="p")  # no kept pool: a connection of its own
        await alone.post("/call", {})
        await alone.aclose()

    with served(app) as url:
        run(scenario(url))
    assert len(ports) == 3  # the fenced call never reached the platform
    assert ports[0] == ports[1] != ports[2]


# --- proxies from the environment -----------------------------------------------------


@pytest.mark.parametrize(
    "environ,routes",
    [
        ({}, {}),
        (
            {"HTTPS_PROXY": "proxy.corp:3128", "http_proxy": "http://p:8080"},
            {"https://": "http://proxy.corp:3128", "http://": "http://p:8080"},
        ),
        # The lower-case name first, as curl reads them.
        (
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"},
            {"https://": "http://lower:1"},
        ),
        (
            {"ALL_PROXY": "http://p:1", "NO_PROXY": "pachd.internal, .corp,10.0.0.7,::1,localhost"},
            {
                "all://": "http://p:1",
                "all://*pachd.internal": None,
                "all://*.corp": None,
                "all://10.0.0.7": None,
                "all://[::1]": None,
                "all://localhost": None,
            },
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "a.example,*"}, {}),
    ],
)
def test_the_environment_names_the_proxies(
    environ: dict[str, str], routes: dict[str, str | None]
) -> None:
    from reconciler.providers.http import environment_proxies

    assert environment_proxies(environ) == routes


def test_calls_go_through_the_environments_proxy_fenced_unless_no_proxy_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runner behind a corporate proxy reaches its platforms through it (as curl,
    pachctl and git would), kept connections included, and the fence still holds there;
    a host in NO_PROXY is reached directly."""
    from tests.proxy import forward_proxy

    async def endpoint(request: Request) -> Response:
        return JSONResponse({"path": request.url.path})

    app = Starlette(routes=[Route("/call", endpoint, methods=["POST"])])

    async def scenario(url: str) -> None:
        kept = KeptConnections()
        for made in (HttpClient(url, platform="p"), HttpClient(url, platform="p", kept=kept)):
            assert await made.post("/call", {}) == {"path": "/call"}
            await refused_by_the_fence(made)
            await made.aclose()
        await kept.aclose()

    with served(app) as url, forward_proxy() as (proxy, forwarded):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        run(scenario(url))
        assert forwarded == [f"{url}/call", f"{url}/call"]  # the fenced calls never left
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        run(scenario(url))
        assert len(forwarded) == 2  # reached directly


def test_an_answer_without_end_or_that_inflates_without_end_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway or proxy between us and the platform may answer anything: an answer is
    read up to MAX_ANSWER bytes (decompressed), no further."""
    monkeypatch.setattr(http_module, "MAX_ANSWER", 8 << 20)
    bomb = gzip.compress(b" " * (64 << 20))  # 64 MiB of spaces in about 64 KiB

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(1024):  # 64 MiB: without end, as far as the client can tell
                yield b" " * 65536

        return StreamingResponse(chunks(), media_type="application/json")

    def gzipped(body: bytes) -> Response:
        headers = {"content-encoding": "gzip"}
        return Response(body, headers=headers, media_type="application/json")

    async def inflating(request: Request) -> Response:
        return gzipped(bomb)

    async def garbled(request: Request) -> Response:
        return gzipped(b"not gzip at all")

    async def fine(request: Request) -> Response:
        return gzipped(gzip.compress(b'{"repos": ["images", "labels"]}'))

    app = Starlette(
        routes=[
            Route(f"/{f.__name__}", f, methods=["POST"])
            for f in (endless, inflating, garbled, fine)
        ]
    )

    async def calls(base: str) -> None:
        http = HttpClient(base, platform="pachd", reads=QUICK)
        try:
            with pytest.raises(PermanentError, match="answered with more than 8 MiB"):
                await http.post("/endless", {}, read=True)
            with pytest.raises(PermanentError, match="answered with more than 8 MiB"):
                await http.post("/inflating", {}, read=True)
            with pytest.raises(PermanentError, match="content-encoding does not decode"):
                await http.post("/garbled", {})
            assert await http.post("/fine", {}, read=True) == {"repos": ["images", "labels"]}
        finally:
            await http.aclose()

    with served(app) as base:
        run(calls(base))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
ERROR_BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries({"code": JSON, "message": JSON}),
    st.fixed_dictionaries({"error": JSON}),
    st.fixed_dictionaries({"message": st.text(), "detail": JSON}),
)


@settings(max_examples=300, deadline=None)
@given(
    body=ERROR_BODIES,
    status=st.sampled_from([400, 403, 404, 409, 429, 500, 503]),
    streamed=st.booleans(),
)
def test_any_error_answer_is_one_printable_line_of_the_platforms_words(
    body: Any, status: int, streamed: bool
) -> None:
    """What a platform (or whatever answers at its URL) says when it refuses, or in the
    middle of a stream, becomes an OperationalError: never a crash, and never text that
    could start a line of its own in a CI log or drive a terminal."""
    if streamed:  # grpc-gateway: a stream whose line carries an error
        assume(bool(body))  # `"error": null` (or false, or empty) is no error
        answer = httpx.Response(200, content=json.dumps({"error": body}).encode() + b"\n")
    else:
        answer = httpx.Response(status, content=json.dumps(body).encode())
    http = client([answer], [])
    with pytest.raises(OperationalError) as raised:
        if streamed:
            run(http.post_stream("/api/pps_v2.API/ListPipeline", {}))
        else:
            run(http.request("POST", "/create", body={}))
    message = str(raised.value)
    assert "\n" not in message and "\x1b" not in message and "\r" not in message
    assert len(message) < 700
