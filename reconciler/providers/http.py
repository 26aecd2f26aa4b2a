"""Layer 2: HTTP for every provider. httpx lives here and nowhere else.

Rule: imports `reconciler.errors` and httpx; platform subpackages build their clients on
`HttpClient` and never touch httpx themselves.

Every failure leaves as one of the project's errors, with the platform's own message:

    httpx timeout, connection refused or reset     RetryableError
    HTTP 429, 502, 503, 504                         RetryableError (Retry-After kept)
    a grpc-gateway status body {code, message}      by its code: DEADLINE_EXCEEDED,
                                                    RESOURCE_EXHAUSTED, ABORTED,
                                                    UNAVAILABLE retryable; others
                                                    PermanentError
    HTTP 401 with an `Auth`                         the token is dropped and the call
                                                    sent once more with a fresh one; a
                                                    second 401 is a PermanentError
    any other status >= 400                         PermanentError
    an answer over MAX_ANSWER bytes, decompressed,  PermanentError
    or one whose content-encoding does not decode

Reads (`read=True`) are retried here with `reconciler.retry.Backoff`: they change
nothing, so trying again is always safe, and an observation that gives up too early
fails the whole run. Mutating calls are never retried here: the executor retries them,
each try written to the intent log.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import os
import ssl
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpcore
import httpx

from reconciler import redact
from reconciler.errors import OperationalError, PermanentError, RetryableError, printable
from reconciler.retry import Backoff, waited_too_long

Transport = httpx.AsyncBaseTransport

FENCE: ContextVar[Callable[[], None] | None] = ContextVar("reconciler_fence", default=None)
"""Who may still act, asked again right before a mutating request leaves (the executor
sets it around each mutating call; `serve` replicas fence on their lease). A task-local
variable rather than a parameter of every provider method: a provider's call may make
several requests, and each must be fenced at the moment it is sent, not when the call
began (a process paused in between must send nothing when it wakes)."""
READS = Backoff()
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
RETRYABLE_GRPC = frozenset({4, 8, 10, 14})
GRPC_NAMES = {
    1: "cancelled",
    2: "unknown",
    3: "invalid argument",
    4: "deadline exceeded",
    5: "not found",
    6: "already exists",
    7: "permission denied",
    8: "resource exhausted",
    9: "failed precondition",
    10: "aborted",
    13: "internal",
    14: "unavailable",
    16: "unauthenticated",
}


class Auth(Protocol):
    """Supplies the credentials of each request (a cached OAuth token)."""

    async def headers(self) -> Mapping[str, str]: ...

    def invalidate(self) -> None:
        """The platform refused the credentials: fetch new ones for the next request."""
        ...

    async def aclose(self) -> None: ...


class HttpError(PermanentError):
    """A refusal with its HTTP status and, for grpc-gateway answers, its gRPC code."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        # A 5xx that is not worth retrying (gRPC INTERNAL, UNKNOWN) may have come after
        # the server did part of the work; a 4xx turned the request away.
        super().__init__(message, refused=status < 500)
        self.status = status
        self.code = code


class RetryableHttpError(RetryableError):
    def __init__(
        self, message: str, status: int, code: int | None = None, retry_after: float | None = None
    ) -> None:
        # Too many requests (HTTP 429, gRPC RESOURCE_EXHAUSTED) is a refusal: the call
        # was not carried out. Any other status may come from a gateway whose backend
        # did the work (RetryableError.refused).
        refused = status == 429 or code == 8
        super().__init__(message, retry_after=retry_after, refused=refused)
        self.status = status
        self.code = code


def asgi_transport(app: Any) -> Transport:
    """A transport that calls an ASGI app in-process (the embedded sandbox).

    An app that fails before answering has answered 500 already (Starlette does that);
    one that fails halfway through an answer has dropped the connection, as a server
    would over TCP, and the client sees a transport error, as it would over TCP."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        state = {"started": False, "complete": False}

        async def tracking(message: Any) -> None:
            if message.get("type") == "http.response.start":
                state["started"] = True
            elif message.get("type") == "http.response.body" and not message.get("more_body"):
                state["complete"] = True
            await send(message)

        try:
            await app(scope, receive, tracking)
        except Exception as exc:
            if state["started"] and not state["complete"]:
                raise httpx.RemoteProtocolError(f"connection dropped mid-answer: {exc}") from None

    return httpx.ASGITransport(app=guarded, raise_app_exceptions=True)


class _FencedStream(httpcore.AsyncNetworkStream):
    """A connection that asks `FENCE` before each write: a request whose connection was
    still being opened when the process was paused is not sent once it wakes."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        fence = FENCE.get()
        if fence is not None:
            fence()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _FencedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _FencedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _FencedStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _FencedStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.lru_cache(maxsize=16)
def tls_context(verify: bool | str) -> ssl.SSLContext | bool:
    """One TLS context per CA setting for the whole process: making one reads the CA
    bundle (about 50 ms of CPU), which every client of every run used to pay again."""
    if verify is False:
        return False
    # httpx's own recipe (certifi, or the bundle given, or SSL_CERT_FILE/SSL_CERT_DIR).
    return httpx.create_ssl_context(verify=verify)


def environment_proxies(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The proxies the environment names, as httpx mount patterns: `http://`,
    `https://` and `all://` to a proxy URL (`http_proxy`, `https_proxy`, `all_proxy`;
    the lower-case name first, as curl reads them), and each host of `no_proxy` to None
    (direct), read as httpx reads them when it makes its own transport: `*` turns every
    proxy off; `example.com` is that domain and every host in it, `.example.com` only
    the hosts in it; an IP address or `localhost` is that host alone."""

    def named(name: str) -> str:
        return (environ.get(name) or environ.get(name.upper()) or "").strip()

    routes: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        url = named(f"{scheme}_proxy")
        if url:
            routes[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (h.strip() for h in named("no_proxy").split(",")):
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            routes[host] = None
            continue
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None:
            routes[f"all://[{address}]" if address.version == 6 else f"all://{address}"] = None
        elif host.lower() == "localhost":
            routes["all://localhost"] = None
        else:  # `*example.com`: the domain and its hosts; `*.example.com`: its hosts
            routes[f"all://*{host}"] = None
    return routes


def fenced_transport(
    verify: bool | str, limits: httpx.Limits | None = None, proxy: str | None = None
) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, its connections fenced (`_FencedStream`), to the platform
    or through `proxy`. httpx does not take a network backend, so the pool it made is
    given ours; a newer httpx without that attribute fails here, loudly, rather than
    leave requests unfenced."""
    try:
        transport = httpx.AsyncHTTPTransport(
            verify=tls_context(verify),
            limits=limits or httpx.Limits(),
            proxy=httpx.Proxy(proxy) if proxy else None,
        )
    except ImportError:  # a SOCKS proxy, without httpx's optional socksio
        raise OperationalError(
            f"the proxy {redact.masked(proxy or '')} needs SOCKS support: install"
            " httpx[socks], or name an HTTP proxy"
        ) from None
    except (ValueError, httpx.InvalidURL) as exc:
        raise OperationalError(
            f"the proxy {redact.masked(proxy or '')} from the environment is not usable: {exc}"
        ) from None
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise AssertionError("httpx's transport changed: its connections cannot be fenced")
    pool._network_backend = _FencedBackend(pool._network_backend)
    return transport


class KeptConnections:
    """Connections to the platforms kept open from one run to the next (`serve`): one
    fenced pool per TLS setting, which every client made with it borrows. Opening
    connections (and, on a real platform, their TLS handshakes) was a good part of a
    short run's CPU. Pools belong to the event loop that used them first: make one per
    loop, and `aclose` it on that loop when it ends."""

    def __init__(self) -> None:
        self._pools: dict[tuple[bool | str, str | None], httpx.AsyncHTTPTransport] = {}

    def transport(self, verify: bool | str, proxy: str | None = None) -> Transport:
        pool = self._pools.get((verify, proxy))
        if pool is None:
            # Several sources' runs share it: no cap on connections beyond each run's own
            # concurrency (httpx's default of 100 would queue runs behind each other).
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
            pool = self._pools[verify, proxy] = fenced_transport(verify, limits, proxy)
        return _Borrowed(pool)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class _Borrowed(httpx.AsyncBaseTransport):
    """A kept pool, as one client sees it: closing the client leaves it open."""

    def __init__(self, pool: httpx.AsyncHTTPTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    body: Any = None
    form: Mapping[str, str] | None = None
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    anonymous: bool = False
    headers: Mapping[str, str] | None = None


class HttpClient:
    """JSON over HTTP to one platform, with the error mapping above."""

    def __init__(
        self,
        base_url: str,
        *,
        platform: str,
        headers: Callable[[], Mapping[str, str]] | None = None,
        auth: Auth | None = None,
        transport: Transport | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        reads: Backoff = READS,
        kept: KeptConnections | None = None,
    ) -> None:
        """`transport` serves a test double; else the connections come from `kept`
        (kept open after `aclose`), else from a pool of the client's own."""
        self.platform = platform
        self._reads = reads
        self._headers = headers
        self._auth = auth
        mounts: dict[str, Transport | None] = {}
        if transport is None:
            made: dict[str | None, Transport] = {}

            def through(proxy: str | None) -> Transport:
                if proxy not in made:
                    made[proxy] = (
                        kept.transport(verify, proxy)
                        if kept is not None
                        else fenced_transport(verify, proxy=proxy)
                    )
                return made[proxy]

            transport = through(None)
            # httpx reads *_PROXY itself only when it makes the transport; ours are
            # fenced and kept, so the routes are given to it (None: the default, direct).
            mounts = {
                pattern: through(proxy) if proxy else None
                for pattern, proxy in environment_proxies(os.environ).items()
            }
        self._client = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            mounts=mounts or None,
            verify=verify,
            timeout=httpx.Timeout(timeout),
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                # Only codings that inflate a network read a thousandfold at most: an
                # answer is refused past MAX_ANSWER, one read's growth at a time.
                "accept-encoding": "gzip, deflate",
            },
        )

    async def post(self, path: str, body: Any = None, *, read: bool = False) -> Any:
        """POST a JSON body; the decoded JSON answer (None when empty)."""
        response = await self._send(_Request("POST", path, body), read=read)
        return _decode(response, self.platform, path)

    async def post_stream(self, path: str, body: Any = None, *, read: bool = False) -> list[Any]:
        """POST, for a grpc-gateway server stream: one `{"result": ...}` per line."""
        response = await self._send(_Request("POST", path, body), read=read)
        lines = [line for line in response.text.splitlines() if line.strip()]
        try:
            # One decode for the whole answer (thousands of lines on a large target).
            items = json.loads("[" + ",".join(lines) + "]")
        except (json.JSONDecodeError, RecursionError):
            items = None  # each line on its own below: which one, and why
        if not isinstance(items, list) or len(items) != len(lines):  # a line not one value
            items = [_json(line, self.platform, path) for line in lines]
        results = []
        for item in items:
            if isinstance(item, dict) and item.get("error"):
                error = item["error"]
                error = error if isinstance(error, dict) else {"message": str(error)}
                raise _status_error(error, 500, self.platform, path)
            results.append(item.get("result") if isinstance(item, dict) else item)
        return results

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        form: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        anonymous: bool = False,
        read: bool = False,
    ) -> Any:
        """Any method; a JSON `body`, a urlencoded `form` or raw `content` (octet-stream);
        `anonymous` leaves the credentials out (a public description of the API); `read`
        marks a call that changes nothing, retried on retryable errors."""
        request = _Request(method, path, body, form, content, params, anonymous)
        return _decode(await self._send(request, read=read), self.platform, path)

    async def binary(
        self,
        method: str,
        path: str,
        *,
        content: bytes,
        params: Mapping[str, str] | None = None,
        read: bool = False,
    ) -> bytes:
        """Raw `content` in, the answer's bytes out (an archive)."""
        request = _Request(method, path, content=content, params=params)
        return (await self._send(request, read=read)).content

    async def deliver(
        self, url: str, content: bytes, headers: Mapping[str, str], *, method: str = "POST"
    ) -> str:
        """Send `content` as it is, with these headers (a signed notification: the
        signature covers exactly these bytes); the answer's text, whatever its type.
        Not retried here: the caller decides."""
        request = _Request(method, url, content=content, headers=headers)
        return (await self._send(request, read=False)).text

    async def text(self, path: str, *, anonymous: bool = False) -> tuple[str, str]:
        """GET a document that need not be JSON (a description, an HTML page): its
        content type and text. A read: retried like the others."""
        response = await self._send(_Request("GET", path, anonymous=anonymous), read=True)
        return response.headers.get("content-type", ""), response.text

    async def _send(self, request: _Request, *, read: bool) -> httpx.Response:
        if not read:
            return await self._answer(request, read=False)
        try:
            async for attempt in self._reads.retrying():
                with attempt:
                    return await self._answer(request)
        except OperationalError as exc:
            exc.args = (f"{exc}{waited_too_long(exc, self._reads)}",)
            raise
        raise AssertionError("unreachable: the last try raises or returns")

    async def _answer(self, request: _Request, *, read: bool = True) -> httpx.Response:
        response = await self._once(request, read=read)
        if response.status_code == 401 and self._auth is not None and not request.anonymous:
            # Tokens expire early or are revoked: one fresh token, then the refusal stands.
            self._auth.invalidate()
            response = await self._once(request, read=read)
        if response.status_code >= 400:
            raise _response_error(response, self.platform, request.path)
        return response

    async def _once(self, request: _Request, *, read: bool = True) -> httpx.Response:
        headers = dict(self._headers()) if self._headers else {}
        if self._auth is not None and not request.anonymous:
            headers.update(await self._auth.headers())
        content = request.content
        if request.form is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        elif content is not None:
            headers["content-type"] = "application/octet-stream"
        elif request.body is not None:
            content = json.dumps(request.body).encode()
        headers.update(request.headers or {})
        method, path = request.method, request.path
        fence = FENCE.get()
        if fence is not None and not read:
            fence()  # the last moment before the request leaves
        try:
            built = (
                self._client.build_request(
                    method, path, data=dict(request.form), headers=headers, params=request.params
                )
                if request.form is not None
                else self._client.build_request(
                    method, path, content=content, headers=headers, params=request.params
                )
            )
            response = await self._client.send(built, stream=True)
            try:
                return await _bounded(response, self.platform, f"{method} {path}")
            finally:
                await response.aclose()
        # Without a connection the request never left (refused: certainly not carried
        # out); a read timeout or a dropped connection may have lost only the answer.
        except httpx.TimeoutException as exc:
            never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise RetryableError(
                f"{self.platform}: {method} {path} timed out", refused=never_sent
            ) from None
        except httpx.TransportError as exc:
            # A proxy that would not open the tunnel (ProxyError) never passed it on.
            raise RetryableError(
                f"{self.platform}: {method} {path}: {type(exc).__name__}: {exc}",
                refused=isinstance(exc, httpx.ConnectError | httpx.ProxyError),
            ) from None
        except httpx.DecodingError as exc:
            # The call was answered (and so perhaps carried out): its body is unreadable.
            raise PermanentError(
                f"{self.platform}: {method} {path} answered with a body its"
                f" content-encoding does not decode ({exc})"
            ) from None

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._auth is not None:
            await self._auth.aclose()


MAX_ANSWER = 1 << 30
"""The most bytes an answer may hold, decompressed (1 GiB: a pachd listing of tens of
thousands of pipelines is a few hundred MiB)."""
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


async def _bounded(response: httpx.Response, platform: str, call: str) -> httpx.Response:
    """The answer read in full, up to `MAX_ANSWER`: a gateway or proxy that streams
    without end, or a small compressed body that inflates without end, is refused
    before it takes the runner's memory. As read, decompressed: a response of its own
    (without the framing headers the bytes no longer carry)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise PermanentError(
                f"{platform}: {call} answered with more than {MAX_ANSWER >> 20} MiB"
                " (decompressed): refused unread; check what answers at the target's URL"
            )
        chunks.append(chunk)
    return httpx.Response(
        response.status_code,
        headers=[(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING],
        content=b"".join(chunks),
        request=response.request,
    )


def _decode(response: httpx.Response, platform: str, path: str) -> Any:
    if not response.content:
        return None
    return _json(response.text, platform, path)


def _json(text: str, platform: str, path: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise PermanentError(
            f"{platform}: {path} answered with something that is not JSON"
        ) from None
    except RecursionError:
        raise PermanentError(f"{platform}: {path} answered with JSON nested too deep") from None


def _response_error(response: httpx.Response, platform: str, path: str) -> OperationalError:
    status = response.status_code
    retry_after = _retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # grpc-gateway: a server stream that failed before its first
    if isinstance(body, dict) and "code" in body and "message" in body:
        error = _status_error(body, status, platform, path)
        if retry_after is not None and isinstance(error, RetryableError):
            error.retry_after = retry_after
        return error
    text = _said(_message(body) or response.text or response.reason_phrase)
    full = f"{platform}: {path}: HTTP {status}: {text}"
    if status in RETRYABLE_STATUS or status >= 500:
        return RetryableHttpError(full, status, retry_after=retry_after)
    return HttpError(full, status)


def _message(body: Any) -> str:
    """The message of an error body in any of the shapes services answer with:
    `{"message": ...}` (with `{"detail": {"message": ...}}` beside it), `{"detail": ...}`
    (FastAPI: text, or a list of `{"msg", "loc"}`), `{"errorMessage": ...}`, `{"error":
    ...}` with `error_description` (OAuth), or text."""
    if isinstance(body, str):
        return body.strip()
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail")
    parts: list[str] = []
    for key in ("message", "errorMessage", "error_description"):
        if isinstance(body.get(key), str) and body[key].strip():
            parts.append(body[key].strip())
    if isinstance(detail, dict):
        parts.append(_message(detail))
    elif isinstance(detail, list):
        parts.extend(
            ".".join(str(p) for p in item.get("loc", ())) + f": {item.get('msg')}"
            if isinstance(item, dict) and "msg" in item
            else str(item)
            for item in detail
        )
    elif detail is not None:
        parts.append(str(detail))
    if not parts and body.get("error") is not None:
        parts.append(_message(body["error"]) or str(body["error"]))
    return "; ".join(dict.fromkeys(p for p in parts if p))


SAID = 500
"""Characters of a platform's message kept in an error."""


def _said(text: str) -> str:
    """A platform's message as an error carries it: one printable line (it is the
    platform's text, shown in terminals, CI logs and pull request comments), at most
    `SAID` characters."""
    line = printable(text.strip())
    return line if len(line) <= SAID else line[: SAID - 3] + "..."


def _status_error(
    body: Mapping[str, Any], status: int, platform: str, path: str
) -> OperationalError:
    code = body.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = 0  # not a gRPC status code (a gateway's own body): judged by the HTTP status
    message = _said(str(body.get("message") or ""))
    name = GRPC_NAMES.get(code, f"code {code}")
    full = f"{platform}: {path}: {name}: {message}"
    if code in RETRYABLE_GRPC or (code == 0 and status in RETRYABLE_STATUS):
        return RetryableHttpError(full, status, code)
    return HttpError(full, status, code)


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` asks for: delay-seconds or an HTTP-date (RFC 9110
    section 10.2.3); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
