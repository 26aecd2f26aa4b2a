"""Notifications of `serve`: what happened, told once, never in the way of a run.

Events (README: Notifications):

    run-failed     a run failed or its commit was invalid (told again only when the
                   error changes)
    run-recovered  a run succeeded after one that failed
    refused        a guard refused the plan (protect, --max-deletes, mass delete,
                   immutable fields)
    drift          a run left resources out of sync (plan mode, a suspension, a failed
                   apply): told when the set of drifted resources changes
    degraded       resources turned degraded on their platform: told when the set of
                   degraded resources (and their reasons) changes

Sinks: Slack incoming webhooks (`{"text", "blocks"}`, mrkdwn escaped), Microsoft Teams
workflow webhooks (an Adaptive Card in a `message`), a generic JSON webhook signed with
HMAC-SHA256 (`X-Reconciler-Signature-256: sha256=<hex>` over the exact body, with
`X-Reconciler-Event` and a unique `X-Reconciler-Delivery`), and the commit statuses of
the revision an applying run works on, on GitHub (`POST /repos/{repo}/statuses/{sha}`)
and GitLab (`POST /api/v4/projects/{id}/statuses/{sha}`): pending, then success or
failure, linking to the run's page, as Flux's notification controller does.

Each delivery runs as its own task, retried with backoff on retryable failures (5xx,
429, timeouts), given up on others; a run never waits for one. Notices carry resource
names, actions and platform messages, never a value: the plan already hides sensitive
values, and tokens only ever travel in the headers of their own sink.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from reconciler.errors import OperationalError
from reconciler.manifests.config import NotificationEvent, Notifications, Sink
from reconciler.manifests.values import Sensitive
from reconciler.providers.http import HttpClient, Transport
from reconciler.resource_status import ResourceStatus
from reconciler.retry import Backoff
from reconciler.server.logs import event
from reconciler.server.metrics import Metrics

log = logging.getLogger("reconciler.server")

CommitState = Literal["pending", "success", "failure"]
GITHUB_STATES = {"pending": "pending", "success": "success", "failure": "failure"}
GITLAB_STATES = {"pending": "running", "success": "success", "failure": "failed"}
DELIVERIES = Backoff(attempts=5, initial=1.0, maximum=30.0)
"""Tries of one delivery, while the receiver fails in a retryable way."""
SHOWN = 20
"""Resources named in one notice; the rest are counted."""


@dataclass(frozen=True)
class Notice:
    event: NotificationEvent
    title: str
    lines: tuple[str, ...]
    run: int
    revision: str | None
    link: str | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "title": self.title,
            "lines": list(self.lines),
            "run": self.run,
            "revision": self.revision,
            "link": self.link,
            "source": self.source,
            "sent_at": time.time(),
        }


@dataclass(frozen=True)
class RunFacts:
    """What the notifier needs of a finished run (kept apart from the runner's report)."""

    number: int
    result: str
    error: str | None
    revision: str | None
    refusals: tuple[str, ...]
    drifted: dict[str, list[str]]
    applies: bool
    """The run could apply (apply mode, not a refresh): commit statuses follow it."""
    held: tuple[str, ...] = ()


def _reveal(value: str | Sensitive | None) -> str:
    if value is None:
        return ""
    return value.reveal() if isinstance(value, Sensitive) else value


def _listed(items: Sequence[str]) -> tuple[str, ...]:
    shown = tuple(items[:SHOWN])
    return shown + ((f"and {len(items) - SHOWN} more",) if len(items) > SHOWN else ())


class Notifier:
    """Decides what to tell (with de-duplication) and sends it in the background."""

    def __init__(
        self,
        metrics: Metrics,
        source: str,
        *,
        transport: Transport | None = None,
        backoff: Backoff = DELIVERIES,
        timeout: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.source = source
        self.backoff = backoff
        self.config = Notifications()
        self._http = HttpClient("", platform="notification", transport=transport, timeout=timeout)
        self._told: dict[str, str] = {}
        self._last_result: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._order: dict[str, asyncio.Lock] = {}
        """Per sink, as written in reconciler.yaml (a new load keeps its lock)."""

    # --- what to tell -------------------------------------------------------------------

    def link(self, run: int) -> str | None:
        base = self.config.link
        return f"{base.rstrip('/')}/runs/{run}" if base else None

    def started(self, run: int, revision: str | None, applies: bool) -> None:
        """A run that may apply `revision` has begun: its commit statuses go pending."""
        if applies and revision:
            self._statuses(run, revision, "pending", f"run #{run}: applying")

    def finished(self, facts: RunFacts, statuses: Sequence[ResourceStatus] | None) -> None:
        notices = self._decide(facts, statuses)
        for notice in notices:
            for sink in self.config.sinks:
                if sink.type in ("slack", "teams", "webhook") and notice.event in sink.events:
                    self._spawn(self._deliver(sink, notice))
        if facts.applies and facts.revision:
            state: CommitState
            if facts.result == "succeeded":
                state, text = "success", f"run #{facts.number}: applied"
            elif facts.result == "drift" and facts.held:
                state = "pending"
                text = f"run #{facts.number}: not applied, automation suspended"
            elif facts.result == "drift":
                state, text = "success", f"run #{facts.number}: planned"
            else:
                state, text = "failure", f"run #{facts.number}: {facts.error or facts.result}"
            self._statuses(facts.number, facts.revision, state, text)

    def _decide(self, facts: RunFacts, statuses: Sequence[ResourceStatus] | None) -> list[Notice]:
        found: list[Notice] = []

        def tell(key: str, fingerprint: str, notice: Notice) -> None:
            if self._told.get(key) != fingerprint:
                self._told[key] = fingerprint
                found.append(notice)

        def notice(kind: NotificationEvent, title: str, lines: Sequence[str]) -> Notice:
            return Notice(
                kind,
                title,
                tuple(lines),
                facts.number,
                facts.revision,
                self.link(facts.number),
                self.source,
            )

        failed = facts.result in ("failed", "invalid")
        if facts.refusals:
            tell(
                "refused",
                "\n".join(facts.refusals),
                notice(
                    "refused",
                    f"reconciler refused to apply {self.source} (run #{facts.number})",
                    _listed(list(facts.refusals)),
                ),
            )
        elif failed:
            tell(
                "run-failed",
                facts.error or facts.result,
                notice(
                    "run-failed",
                    f"reconciler run #{facts.number} {facts.result} on {self.source}",
                    [facts.error or facts.result],
                ),
            )
        if not failed:
            self._told.pop("refused", None)
            self._told.pop("run-failed", None)
            if self._last_result in ("failed", "invalid"):
                found.append(
                    notice(
                        "run-recovered",
                        f"reconciler run #{facts.number} {facts.result} on {self.source}"
                        " after a failure",
                        [f"revision {facts.revision or '-'}"],
                    )
                )
        self._last_result = facts.result
        for target, ids in sorted(facts.drifted.items()):
            key = f"drift:{target}"
            if not ids:
                self._told.pop(key, None)
                continue
            tell(
                key,
                "\n".join(sorted(ids)),
                notice(
                    "drift",
                    f"{len(ids)} resource(s) out of sync on target {target}",
                    _listed(sorted(ids)),
                ),
            )
        if statuses is not None:
            degraded: dict[str, list[ResourceStatus]] = {}
            for status in statuses:
                if status.managed and status.health.state == "degraded":
                    degraded.setdefault(status.id.target, []).append(status)
            told = {key.split(":", 1)[1] for key in self._told if key.startswith("degraded:")}
            for target in sorted({s.id.target for s in statuses} | told):
                key = f"degraded:{target}"
                mine = degraded.get(target, [])
                if not mine:
                    self._told.pop(key, None)
                    continue
                lines = [f"{s.id}: {s.health.reason or 'degraded'}" for s in mine]
                tell(
                    key,
                    "\n".join(lines),
                    notice(
                        "degraded",
                        f"{len(mine)} resource(s) degraded on target {target}",
                        _listed(lines),
                    ),
                )
        return found

    # --- sending ------------------------------------------------------------------------

    def _statuses(self, run: int, revision: str, state: CommitState, text: str) -> None:
        for sink in self.config.sinks:
            if sink.type in ("github", "gitlab"):
                self._spawn(self._commit_status(sink, run, revision, state, text))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, sink: Sink, notice: Notice) -> None:
        if sink.type == "slack":
            body = _slack(notice)
            headers = {"content-type": "application/json"}
        elif sink.type == "teams":
            body = _teams(notice)
            headers = {"content-type": "application/json"}
        else:
            body = notice.to_json()
            headers = {"content-type": "application/json"}
        content = json.dumps(body, ensure_ascii=False).encode()
        if sink.type == "webhook":
            key = _reveal(sink.secret).encode()
            signature = hmac.new(key, content, hashlib.sha256).hexdigest()
            headers.update(
                {
                    "x-reconciler-event": notice.event,
                    "x-reconciler-delivery": str(uuid.uuid4()),
                    "x-reconciler-signature-256": f"sha256={signature}",
                }
            )
        await self._send(sink, _reveal(sink.url), content, headers, notice.event)

    async def _commit_status(
        self, sink: Sink, run: int, revision: str, state: CommitState, text: str
    ) -> None:
        repository = sink.repository or ""
        token = _reveal(sink.token)
        link = self.link(run)
        if sink.type == "github":
            api = _reveal(sink.url) or "https://api.github.com"
            url = f"{api.rstrip('/')}/repos/{repository}/statuses/{revision}"
            body: dict[str, Any] = {
                "state": GITHUB_STATES[state],
                "description": text[:140],
                "context": sink.context,
            }
            headers = {
                "authorization": f"Bearer {token}",
                "accept": "application/vnd.github+json",
                "x-github-api-version": "2022-11-28",
                "content-type": "application/json",
            }
        else:
            api = _reveal(sink.url) or "https://gitlab.com"
            url = (
                f"{api.rstrip('/')}/api/v4/projects/{quote(repository, safe='')}"
                f"/statuses/{revision}"
            )
            body = {"state": GITLAB_STATES[state], "description": text[:255], "name": sink.context}
            headers = {"private-token": token, "content-type": "application/json"}
        if link:
            body["target_url"] = link
        content = json.dumps(body).encode()
        await self._send(sink, url, content, headers, f"commit status {state}")

    async def _send(
        self, sink: Sink, url: str, content: bytes, headers: dict[str, str], what: str
    ) -> None:
        # One delivery at a time per sink, in the order they were decided (asyncio's locks
        # are fair): a channel reads "recovered" before the news that followed it.
        key = json.dumps(sink.model_dump(mode="json", context={"expressions": True}))
        lock = self._order.setdefault(key, asyncio.Lock())
        async with lock:
            await self._attempt(sink, url, content, headers, what)

    async def _attempt(
        self, sink: Sink, url: str, content: bytes, headers: dict[str, str], what: str
    ) -> None:
        try:
            async for attempt in self.backoff.retrying():
                with attempt:
                    await self._http.deliver(url, content, headers)
        except OperationalError as exc:
            self.metrics.notifications.labels(sink.type, "failed").inc()
            event(
                log,
                "notification not delivered",
                logging.WARNING,
                sink=sink.type,
                what=what,
                why=str(exc).replace(url, "<url>"),
            )
            return
        except Exception as exc:  # a notification must never take the server down
            self.metrics.notifications.labels(sink.type, "failed").inc()
            event(log, "notification not delivered", logging.ERROR, sink=sink.type, why=repr(exc))
            return
        self.metrics.notifications.labels(sink.type, "sent").inc()

    async def drain(self, timeout: float = 5.0) -> None:
        """Let deliveries in flight finish (at shutdown), for at most `timeout` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def aclose(self) -> None:
        await self.drain()
        for task in list(self._tasks):
            task.cancel()
        await self._http.aclose()


def _slack_text(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters: escaped as it documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(notice: Notice) -> dict[str, Any]:
    lines = "\n".join(f"• {_slack_text(line)}" for line in notice.lines)
    text = f"*{_slack_text(notice.title)}*\n{lines}"
    if notice.link:
        text += f"\n<{notice.link}|Open run #{notice.run}>"
    return {
        "text": notice.title,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
    }


def _teams(notice: Notice) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "wrap": True},
            *({"type": "TextBlock", "text": line, "wrap": True} for line in notice.lines),
        ],
    }
    if notice.link:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": f"Open run #{notice.run}", "url": notice.link}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
