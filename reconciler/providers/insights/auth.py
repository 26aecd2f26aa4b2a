"""Keycloak client credentials: a bearer token, cached until shortly before it expires.

One token serves every concurrent call: the first caller fetches it under a lock, the
others wait for it. A 401 from the Package Manager drops it (`invalidate`), so the next
call fetches a fresh one once (see `reconciler.providers.http`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from reconciler.errors import PermanentError
from reconciler.providers.http import HttpClient, HttpError

MARGIN = 30.0
"""Seconds before its expiry that a token is no longer used."""
MAX_LIFETIME = 86_400.0
"""The longest a token is kept (a day), whatever `expires_in` says."""


def token_paths(realm: str) -> tuple[str, ...]:
    """Keycloak's token endpoint: installs before Keycloak 17 keep the `/auth` prefix,
    newer ones drop it; the first that exists is used from then on."""
    path = f"/realms/{realm}/protocol/openid-connect/token"
    return ("/auth" + path, path)


class KeycloakAuth:
    """Implements `reconciler.providers.http.Auth` with the client-credentials grant."""

    def __init__(
        self,
        http: HttpClient,
        token_urls: tuple[str, ...],
        client_id: Callable[[], str],
        client_secret: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._urls = token_urls
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0
        """How many tokens were fetched: a test reads it."""

    async def headers(self) -> Mapping[str, str]:
        return {"authorization": f"Bearer {await self.token()}"}

    def invalidate(self) -> None:
        self._token = None

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._expires:
                self._token, lifetime = await self._fetch()
                margin = min(MARGIN, lifetime / 10)
                self._expires = self._clock() + lifetime - margin
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id(),
            "client_secret": self._client_secret(),
        }
        for index, url in enumerate(self._urls):
            try:
                answer = await self._http.request("POST", url, form=form)
            except HttpError as exc:
                if exc.status == 404 and index + 1 < len(self._urls):
                    continue
                raise PermanentError(
                    f"authentication failed at {url}: {exc}. Check the client id and secret"
                    " (INSIGHTS_CLIENT_ID, INSIGHTS_CLIENT_SECRET) and the realm"
                    " (INSIGHTS_REALM)"
                ) from None
            self._urls = (url,)
            break
        self.fetched += 1
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(
                f"authentication at {self._urls[0]} answered without an access_token"
            )
        lifetime = answer.get("expires_in", 60)
        if not isinstance(lifetime, int | float) or not 0 <= lifetime <= MAX_LIFETIME:
            # Python's JSON reads NaN and Infinity too: a token that would never be
            # fetched again, or one fetched before every call, is taken for a minute.
            lifetime = 60.0
        return token, float(lifetime)

    async def aclose(self) -> None:
        await self._http.aclose()
