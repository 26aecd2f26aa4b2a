"""Who may look at the web UI and who may act through it.

One secret opens the UI: `RECONCILER_UI_TOKEN`, else the generic webhook's token. A person
gives it once on the login page and gets a session cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS) signed with a key this process makes at start (sessions end with the
process); a program sends it as `Authorization: Bearer` instead (`reconciler sync`).
Every form that acts carries a CSRF token bound to the session, checked on POST, so
another site cannot make a logged-in browser act. Read-only pages need a session too
unless the operator opened them to all (`--ui-public`); actions always need one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from starlette.requests import Request

from reconciler.server.hooks import bearer, token_matches

COOKIE = "reconciler_session"
LIFETIME = 12 * 3600.0
"""Seconds a session lasts."""


@dataclass
class Sessions:
    token: str | None
    """The UI's secret; None: nobody can log in (and no action can be taken)."""
    public: bool = False
    """Read-only pages open to anyone who can reach the server."""
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def login(self, given: str, now: float | None = None) -> str | None:
        """A new session cookie's value when `given` is the token; None otherwise."""
        if self.token is None or not token_matches(self.token, given):
            return None
        expires = int((now if now is not None else time.time()) + LIFETIME)
        nonce = secrets.token_urlsafe(18)
        body = f"{expires}.{nonce}"
        return f"{body}.{self._sign('session', body)}"

    def session(self, request: Request, now: float | None = None) -> str | None:
        """The session id of a valid, unexpired cookie; None without one."""
        value = request.cookies.get(COOKIE, "")
        body, _, signature = value.rpartition(".")
        expires, _, nonce = body.partition(".")
        if not (body and nonce and expires.isdigit()):
            return None
        if not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        if int(expires) < (now if now is not None else time.time()):
            return None
        return nonce

    def csrf(self, session: str) -> str:
        return self._sign("csrf", session)

    def mark(self, message: str) -> str:
        """A signature for a message shown after an action's redirect."""
        return self._sign("flash", message)

    def flash(self, message: str, mark: str) -> str:
        """`message` if this server wrote it (a link cannot put words in its mouth)."""
        if message and hmac.compare_digest(mark, self.mark(message)):
            return message
        return ""

    def bearer_ok(self, request: Request) -> bool:
        return self.token is not None and token_matches(
            self.token, bearer(request.headers.get("authorization"))
        )

    def may_read(self, request: Request) -> bool:
        return self.public or self.session(request) is not None or self.bearer_ok(request)

    def may_act(self, request: Request, csrf: str | None) -> bool:
        """A bearer token, or a session whose form carries its CSRF token."""
        if self.bearer_ok(request):
            return True
        session = self.session(request)
        if session is None or csrf is None:
            return False
        return hmac.compare_digest(csrf, self.csrf(session))

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self.key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()
