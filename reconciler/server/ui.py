"""The web UI of `reconciler serve`: server-rendered pages, usable without JavaScript.

    GET  /                      overview: each target's sync and health counts, last run,
                                lock holder, suspension
    GET  /resources             filter by target, kind, sync, health, text; paginated
    GET  /resources/{id}        one resource: planned change and what it restarts, its
                                dependencies up and down, the history of actions on it
    GET  /runs, /runs/{number}  runs, and one run's trigger, revision, plan and results
    GET  /graph?target=T        the dependency graph as SVG (or ?resource=ID: its
                                neighbourhood)
    GET  /login, POST /login    the UI token, exchanged for a session cookie
    POST /actions/{sync,refresh,suspend,resume}   forms (session + CSRF) or a bearer token

Every page comes from data the server already holds (the last run's statuses, the run
history) and the state store (locks, suspensions, applied actions); none calls a platform.
Changes are shown as the plan holds them: sensitive values are `(sensitive)` there, never
in clear, and no page carries a token (the CSRF token is derived from the session).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reconciler.providers.base import HEALTH_STATES
from reconciler.resource_status import SYNCS, ResourceStatus
from reconciler.server import svg
from reconciler.server.hooks import Trigger
from reconciler.server.logs import event
from reconciler.server.sessions import COOKIE, LIFETIME, Sessions
from reconciler.state import ALL_TARGETS, StateStore, Suspension, open_store, suspension_of

if TYPE_CHECKING:
    from reconciler.server.app import Server

log = logging.getLogger("reconciler.server")

HERE = Path(__file__).parent
PAGE_SIZE = 100
MAX_FORM = 16 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["rid"] = lambda rid: quote(str(rid), safe="")
    env.filters["words"] = lambda text: str(text or "").replace("_", " ")
    env.filters["value"] = _value
    env.filters["duration"] = lambda seconds: "-" if seconds is None else f"{seconds:.1f}s"
    return env


def _value(value: Any) -> str:
    """A changed value as JSON; a sensitive one (never in clear) as `(sensitive)`."""
    if value is None:
        return ""
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class Filters:
    target: str = ""
    kind: str = ""
    sync: str = ""
    health: str = ""
    text: str = ""
    page: int = 1

    @staticmethod
    def of(request: Request) -> Filters:
        query = request.query_params
        page = query.get("page", "1")
        return Filters(
            query.get("target", ""),
            query.get("kind", ""),
            query.get("sync", ""),
            query.get("health", ""),
            query.get("q", "")[:200],
            max(1, int(page)) if page.isdigit() else 1,
        )

    def keep(self, status: ResourceStatus) -> bool:
        return (
            (not self.target or status.id.target == self.target)
            and (not self.kind or status.id.kind == self.kind)
            and (not self.sync or status.sync == self.sync)
            and (not self.health or status.health.state == self.health)
            and (not self.text or self.text.lower() in str(status.id).lower())
        )

    def query(self, **changed: Any) -> str:
        values = {
            "target": self.target,
            "kind": self.kind,
            "sync": self.sync,
            "health": self.health,
            "q": self.text,
            "page": self.page,
        }
        values.update(changed)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 1)})


class UI:
    def __init__(self, server: Server, sessions: Sessions) -> None:
        self.server = server
        self.sessions = sessions
        self.env = _environment()

    # --- plumbing --------------------------------------------------------------------

    @contextmanager
    def store(self) -> Iterator[StateStore | None]:
        """The state store the last run used; None before the first run loaded one."""
        state = self.server.runner.state
        if state is None:
            yield None
            return
        store = open_store(state[0], state[1])
        try:
            yield store
        finally:
            store.close()

    def render(self, request: Request, template: str, code: int = 200, **data: Any) -> Response:
        session = self.sessions.session(request)
        context = {
            "request": request,
            "root": root_of(request),
            "csrf": self.sessions.csrf(session) if session else None,
            "logged_in": session is not None,
            "ui_enabled": self.sessions.enabled,
            "mode": self.server.options.mode,
            "source": self.server.source_shown,
            "running": self.server.worker.running is not None,
            "pending": self.server.worker.pending is not None,
            "flash": self.sessions.flash(
                request.query_params.get("done", ""), request.query_params.get("mark", "")
            ),
            **data,
        }
        html = self.env.get_template(template).render(context)
        response = HTMLResponse(html, status_code=code)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
            " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    def guarded(self, page: Handler) -> Handler:
        async def handler(request: Request) -> Response:
            if not self.sessions.may_read(request):
                target = quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return RedirectResponse(f"{root_of(request)}/login?next={target}", status_code=303)
            if self.server.view is not None:
                await asyncio.to_thread(self.server.view)
            return await page(request)

        return handler

    def statuses(self) -> list[ResourceStatus]:
        snapshot = self.server.runner.resources
        return list(snapshot.statuses) if snapshot is not None else []

    def targets(self) -> list[str]:
        found = set(self.server.runner.targets)
        found.update(s.id.target for s in self.statuses())
        return sorted(found)

    # --- pages -----------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        runner = self.server.runner
        with self.store() as store:
            locks = store.locks() if store is not None else {}
            suspensions = store.suspensions() if store is not None else {}
        statuses = self.statuses()
        rows = []
        for target in self.targets():
            mine = [s for s in statuses if s.id.target == target and s.managed]
            report = runner.by_target.get(target)
            rows.append(
                {
                    "name": target,
                    "managed": len(mine),
                    "sync": {k: sum(1 for s in mine if s.sync == k) for k in SYNCS},
                    "health": {
                        k: sum(1 for s in mine if s.health.state == k) for k in HEALTH_STATES
                    },
                    "unmanaged": sum(
                        1 for s in statuses if s.id.target == target and not s.managed
                    ),
                    "last": report,
                    "lock": locks.get(target),
                    "suspended": suspension_of(suspensions, target),
                }
            )
        snapshot = runner.resources
        return self.render(
            request,
            "overview.html",
            targets=rows,
            last=runner.last,
            current=runner.current,
            snapshot=snapshot,
            everywhere=suspensions.get(ALL_TARGETS),
            schedule=self.server.options.schedule.describe(),
        )

    async def resources(self, request: Request) -> Response:
        filters = Filters.of(request)
        statuses = self.statuses()
        kept = [s for s in statuses if filters.keep(s)]
        pages = max(1, ceil(len(kept) / PAGE_SIZE))
        page = min(filters.page, pages)
        shown = kept[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return self.render(
            request,
            "resources.html",
            rows=shown,
            total=len(kept),
            everything=len(statuses),
            filters=filters,
            page=page,
            pages=pages,
            targets=self.targets(),
            kinds=sorted({s.id.kind for s in statuses}),
            syncs=SYNCS,
            healths=HEALTH_STATES,
            snapshot=self.server.runner.resources,
        )

    async def resource(self, request: Request) -> Response:
        text = request.path_params["rid"]
        by_id = {str(s.id): s for s in self.statuses()}
        status = by_id.get(text)
        if status is None:
            return self.render(request, "missing.html", 404, what=f"resource {text}")
        history = []
        with self.store() as store:
            runs = store.runs(200, target=status.id.target) if store is not None else []
        for run in runs:
            for action in run.actions or ():
                if action.get("id") == text:
                    history.append({"run": run, "action": action})
        reports = [
            r for r in self.server.runner.history if any(a.get("id") == text for a in r.plan)
        ]
        return self.render(
            request,
            "resource.html",
            resource=status,
            history=history[:50],
            reports=reports[:20],
            known=set(by_id),
        )

    async def runs(self, request: Request) -> Response:
        with self.store() as store:
            applied = store.runs(50) if store is not None else []
        return self.render(
            request,
            "runs.html",
            reports=list(self.server.runner.history),
            current=self.server.runner.current,
            applied=applied,
        )

    async def run(self, request: Request) -> Response:
        number = request.path_params["number"]
        report = next((r for r in self.server.runner.history if r.number == number), None)
        if report is None:
            return self.render(request, "missing.html", 404, what=f"run {number}")
        record = None
        if report.run_id is not None:
            with self.store() as store:
                if store is not None:
                    record = next((r for r in store.runs(200) if r.id == report.run_id), None)
        return self.render(request, "run.html", report=report, record=record)

    async def graph(self, request: Request) -> Response:
        statuses = {s.id: s for s in self.statuses()}
        target = request.query_params.get("target", "")
        centre_text = request.query_params.get("resource", "")
        centre = next((rid for rid in statuses if str(rid) == centre_text), None)
        if centre is not None:
            chosen = svg.neighbourhood(statuses, centre)
            title = f"around {centre}"
        else:
            target = target or (self.targets() or [""])[0]
            chosen = [s for s in statuses.values() if s.id.target == target and s.managed]
            title = f"target {target}"
        too_many = len(chosen) > svg.MAX_NODES
        drawing = "" if too_many or not chosen else svg.render(chosen, centre, root_of(request))
        return self.render(
            request,
            "graph.html",
            drawing=drawing,
            title=title,
            count=len(chosen),
            too_many=too_many,
            limit=svg.MAX_NODES,
            targets=self.targets(),
            target=target,
        )

    # --- login -----------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        following = _local(request.query_params.get("next"), root_of(request))
        return self.render(request, "login.html", next=following)

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        cookie = self.sessions.login(form.get("token", ""))
        following = _local(form.get("next"), root_of(request))
        if cookie is None:
            event(log, "ui login refused", logging.WARNING)
            return self.render(request, "login.html", 401, next=following, refused=True)
        response = RedirectResponse(following, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(LIFETIME),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto") == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        if not self.sessions.may_act(request, form.get("csrf")):
            return _refused(request)
        response = RedirectResponse(root_of(request) + "/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # --- actions ---------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        what = request.path_params["action"]
        form = await _form(request)
        if what not in ACTIONS:
            return JSONResponse({"error": f"no action {what}"}, status_code=404)
        if not self.sessions.may_act(request, form.get("csrf")):
            event(log, "ui action refused", logging.WARNING, action=what)
            return _refused(request)
        by = _who(request)
        target = form.get("target") or ALL_TARGETS
        if what in ("sync", "refresh"):
            await self.server.trigger(
                Trigger("sync" if what == "sync" else "refresh", plan=what == "refresh")
            )
            done = "a run was queued" if what == "sync" else "a refresh (plan only) was queued"
        else:
            with self.store() as store:
                if store is None:
                    return _answer(
                        request,
                        409,
                        "no run has loaded the state store yet: try again after the first run",
                    )
                if target != ALL_TARGETS and target not in self.targets():
                    return _answer(request, 400, f"no target {target}")
                if what == "suspend":
                    reason = form.get("reason", "")[:500]
                    store.suspend(Suspension(target, by, time.time(), reason))
                    done = f"automation suspended on {_named(target)}"
                else:
                    lifted = store.resume(target)
                    done = (
                        f"automation resumed on {_named(target)}"
                        if lifted is not None
                        else f"{_named(target)} was not suspended"
                    )
        event(log, "ui action", action=what, target=target, by=by)
        if _wants_json(request):
            return JSONResponse({"ok": True, "done": done}, status_code=202)
        back = _local(form.get("next"), root_of(request))
        return RedirectResponse(
            back
            + ("&" if "?" in back else "?")
            + urlencode({"done": done, "mark": self.sessions.mark(done)}),
            status_code=303,
        )

    def routes(self) -> list[Route | Mount]:
        guarded = self.guarded
        return [
            Route("/", guarded(self.overview)),
            Route("/resources", guarded(self.resources)),
            Route("/resources/{rid:path}", guarded(self.resource)),
            Route("/runs", guarded(self.runs)),
            Route("/runs/{number:int}", guarded(self.run)),
            Route("/graph", guarded(self.graph)),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/actions/{action}", self.act, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


ACTIONS = ("sync", "refresh", "suspend", "resume")


def _named(target: str) -> str:
    return "every target" if target == ALL_TARGETS else f"target {target}"


def _who(request: Request) -> str:
    """Who acted, as far as the server can tell: the UI (or API) and the client address."""
    client = request.client.host if request.client else "unknown"
    via = "api" if request.headers.get("authorization") else "ui"
    return f"{via} from {client} (serve on {socket.gethostname()})"


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or bool(
        request.headers.get("authorization")
    )


def root_of(request: Request) -> str:
    """Where this source's pages are mounted: "" for `serve SOURCE`, `/sources/NAME`
    for `serve --config`."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _local(path: str | None, root: str = "") -> str:
    """A redirect target on this server only (never another host: an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return root + "/"
    return path


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form, at most MAX_FORM bytes (starlette's parser needs
    python-multipart; these forms are small and flat)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    if "json" in request.headers.get("content-type", ""):
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _refused(request: Request) -> Response:
    return _answer(
        request,
        403,
        "refused: log in with the UI token (RECONCILER_UI_TOKEN), or send it as a bearer"
        " token; forms must come from this UI",
    )


def _answer(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>reconciler</title>'
        '<link rel="stylesheet" href="/static/ui.css"></head><body><main>'
        f'<p class="refused">{escape(message)}</p><p><a href="/">Back to the overview</a>'
        ' · <a href="/login">Log in</a></p></main></body></html>'
    )
    return HTMLResponse(page, status_code=status)
