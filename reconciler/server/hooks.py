"""Webhook requests: who sent them, whether we saw them before, what they ask for.

Signatures and tokens are compared with `hmac.compare_digest` (constant time); a
delivery id is remembered only after its request authenticated, so forged requests
cannot poison the replay log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1 << 20
"""Bodies above 1 MiB are refused (413) before they are read in full."""
FORM = "application/x-www-form-urlencoded"
ZERO_COMMIT = "0" * 40


@dataclass(frozen=True)
class Trigger:
    """Why a run is wanted."""

    reason: str
    """startup, schedule, github, gitlab, generic, sync (the UI or `reconciler sync`) or
    refresh."""
    revision: str | None = None
    """The commit a push announced (the run fetches the branch's newest anyway)."""
    delivery: str | None = None
    plan: bool = False
    """Plan only, whatever serve's mode (a refresh: observe and report, change nothing)."""


def github_signed(secret: str, body: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256: `sha256=` and the HMAC-SHA256 of the body under the secret."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), _bytes(header.removeprefix("sha256=")))


def token_matches(secret: str, given: str | None) -> bool:
    """X-Gitlab-Token, or the token of `Authorization: Bearer ...`."""
    return given is not None and hmac.compare_digest(secret.encode(), _bytes(given))


def _bytes(text: str) -> bytes:
    # compare_digest refuses non-ASCII text (TypeError): compare bytes, so that a header
    # with any character is simply a mismatch, answered 401.
    return text.encode("utf-8", "surrogateescape")


def github_payload(body: bytes, content_type: str | None) -> Any:
    """A delivery's payload: the body as JSON, or, for a webhook set to
    `application/x-www-form-urlencoded`, the JSON in its `payload` field. Raises
    ValueError when it is neither."""
    if (content_type or "").split(";")[0].strip().lower() == FORM:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        if "payload" not in fields:
            raise ValueError("a form delivery without a payload field")
        return json.loads(fields["payload"][0])
    return json.loads(body) if body else {}


def bearer(header: str | None) -> str | None:
    if header is None or not header.lower().startswith("bearer "):
        return None
    return header[len("bearer ") :].strip()


class Deliveries:
    """The newest `size` delivery ids seen: a replayed one is ignored."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, delivery: str | None) -> bool:
        if not delivery:
            return True
        if delivery in self._seen:
            return False
        self._seen[delivery] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


@dataclass(frozen=True)
class Verdict:
    """What a push-like event asks for: a trigger, or why it is ignored."""

    trigger: Trigger | None
    ignored: str | None = None
    pong: bool = False
    """A ping: answered, nothing run."""


def github_event(event: str, payload: Any, branch: str, delivery: str | None) -> Verdict:
    if event != "push":
        return Verdict(None, f"event '{event}' does not trigger runs")
    return _push(payload, branch, "github", "after", delivery)


def gitlab_event(event: str, payload: Any, branch: str, delivery: str | None) -> Verdict:
    if event != "Push Hook":
        return Verdict(None, f"event '{event}' does not trigger runs")
    return _push(payload, branch, "gitlab", "checkout_sha", delivery)


def _push(payload: Any, branch: str, reason: str, sha_key: str, delivery: str | None) -> Verdict:
    if not isinstance(payload, dict):
        return Verdict(None, "not a push payload")
    ref = payload.get("ref")
    if ref != f"refs/heads/{branch}":
        return Verdict(None, f"push to {ref}, not to the tracked branch {branch}")
    # A push that deletes the branch: GitHub says `deleted`, both name the zero commit as
    # `after` (GitLab's checkout_sha is null then). Nothing is there to reconcile.
    if payload.get("deleted") is True or payload.get("after") == ZERO_COMMIT:
        return Verdict(None, f"the push deleted the tracked branch {branch}: nothing to run")
    sha = payload.get(sha_key)
    return Verdict(Trigger(reason, sha if isinstance(sha, str) else None, delivery))
