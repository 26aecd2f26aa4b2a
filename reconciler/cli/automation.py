"""`suspend`, `resume`, `sync` and `rollback`: steering automation from outside.

Suspensions live in the state store, so every `serve` sharing it sees them; `suspend`
and `resume` need only reconciler.yaml and the state (manifests that do not load never
block them). `sync` asks a running `serve` to run now, over its HTTP API. `rollback`
applies an earlier revision of a git source and suspends automation, so that the next
scheduled run does not undo it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from reconciler import checkout
from reconciler.cli.apply import run_apply
from reconciler.cli.common import (
    ProfileOpt,
    RefOpt,
    SourceArg,
    _connector,
    _fetch,
    _load,
    out,
    require_target,
)
from reconciler.cli.plan import options_from_flags
from reconciler.cli.state import _configuration
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.manifests.config import Settings
from reconciler.state import ALL_TARGETS, StateStore, Suspension, open_store

TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", help="Only this target (default: every target)."),
]
ConfigArg = Annotated[
    Path, typer.Argument(help="The folder of reconciler.yaml.", show_default=True)
]


def _who(action: str) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} ({action})"


def _target(settings: Settings, target: str | None) -> str:
    if target is None:
        return ALL_TARGETS
    require_target(settings, target, "--target")
    return target


def _named(target: str) -> str:
    return "every target" if target == ALL_TARGETS else f"target '{target}'"


def suspend(
    path: ConfigArg = Path(),
    profile: ProfileOpt = None,
    target: TargetOpt = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why: shown by status, the UI and serve's logs.")
    ] = "",
) -> int:
    """Pause automation: `serve` keeps planning and reporting drift on the target (or every
    target), and applies nothing there until `reconciler resume`. Recorded in the state
    store with who, when and why."""
    root, settings = _configuration(path, profile)
    chosen = _target(settings, target)
    store = open_store(settings.state, root)
    try:
        suspension = Suspension(chosen, _who("reconciler suspend"), time.time(), reason[:500])
        store.suspend(suspension)
    finally:
        store.close()
    out.print(f"automation on {_named(chosen)} {suspension.describe()}", markup=False)
    return 0


def resume(
    path: ConfigArg = Path(),
    profile: ProfileOpt = None,
    target: TargetOpt = None,
) -> int:
    """Lift a suspension: of one target with --target, otherwise every suspension."""
    root, settings = _configuration(path, profile)
    chosen = _target(settings, target)
    store = open_store(settings.state, root)
    try:
        lifted = _resume(store, chosen)
        left = store.suspensions()
    finally:
        store.close()
    if not lifted:
        out.print(f"{_named(chosen)}: nothing was suspended", markup=False)
    for suspension in lifted:
        out.print(
            f"resumed {_named(suspension.target)} (it was {suspension.describe()})", markup=False
        )
    if ALL_TARGETS in left:
        out.print(
            f"every target is still {left[ALL_TARGETS].describe()}: `reconciler resume`"
            " without --target lifts it",
            markup=False,
        )
    return 0


def _resume(store: StateStore, target: str) -> list[Suspension]:
    if target != ALL_TARGETS:
        one = store.resume(target)
        return [one] if one is not None else []
    found = [store.resume(name) for name in sorted(store.suspensions())]
    return [s for s in found if s is not None]


def sync(
    server: Annotated[
        str,
        typer.Option(
            "--server",
            envvar="RECONCILER_SERVER",
            help="The running serve's URL (or RECONCILER_SERVER), e.g. http://localhost:8080.",
        ),
    ] = "http://127.0.0.1:8080",
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Plan only: observe and report, change nothing.")
    ] = False,
) -> int:
    """Ask a running `serve` to run now (as the UI's "Sync now" does). Sends the UI token
    (RECONCILER_UI_TOKEN, else RECONCILER_WEBHOOK_TOKEN) as a bearer token."""
    token = os.environ.get("RECONCILER_UI_TOKEN") or os.environ.get("RECONCILER_WEBHOOK_TOKEN")
    if not token:
        raise InputError(
            [
                Problem(
                    "RECONCILER_UI_TOKEN",
                    message="no token to send: serve accepts a sync with its UI token",
                    hint="export RECONCILER_UI_TOKEN (or RECONCILER_WEBHOOK_TOKEN) as serve has it",
                )
            ]
        )
    if not server.startswith(("http://", "https://")):
        raise InputError(
            [
                Problem(
                    "--server",
                    message=f"'{server}' is not an http(s) URL",
                    hint="e.g. http://localhost:8080",
                )
            ]
        )
    action = "refresh" if refresh else "sync"
    request = urllib.request.Request(
        server.rstrip("/") + f"/actions/{action}",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        raise OperationalError(f"{server} refused the {action} ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OperationalError(f"cannot reach serve at {server}: {exc}") from None
    out.print(f"{server}: {body.get('done', 'queued')}", markup=False)
    return 0


def rollback(
    ctx: typer.Context,
    source: SourceArg = ".",
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The revision to go back to (default: the one before the last successful apply).",
        ),
    ] = None,
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> int:
    """Apply the manifests of an earlier revision of a git source, then suspend automation
    on every target so that the next scheduled run does not undo it (`reconciler resume`
    once the branch holds what should run). Pruning follows reconciler.yaml, as apply."""
    current = _fetch(source, ref)
    root, settings = _configuration(current.folder, profile)
    store = open_store(settings.state, root)
    try:
        revision = to or _previous(store)
    finally:
        store.close()
    with tempfile.TemporaryDirectory(prefix="reconciler-rollback-") as scratch:
        earlier = checkout.at(current, revision, Path(scratch))
        manifests = _load(earlier.folder, profile)
        out.print(
            f"rolling back {current.origin.shown} to {earlier.revision}"
            f" (now at {current.revision or 'no commit'})",
            markup=False,
        )
        options = options_from_flags(manifests, None, False, None, None, False)
        code = run_apply(
            _connector(ctx),
            earlier,
            manifests,
            options,
            yes=yes,
            question=f"Roll back to {str(earlier.revision)[:12]}?",
        )
        store = open_store(manifests.settings.state, manifests.root)
        try:
            reason = (
                f"rolled back to {str(earlier.revision)[:12]}: the next run would apply the"
                " branch again; resume once it holds what should run"
            )
            suspension = Suspension(ALL_TARGETS, _who("reconciler rollback"), time.time(), reason)
            store.suspend(suspension)
        finally:
            store.close()
    out.print(
        f"automation suspended on every target, so that serve does not undo the rollback:"
        f" `reconciler resume {source}` when the branch is fixed",
        markup=False,
    )
    return code


def _previous(store: StateStore) -> str:
    """The revision before the last successful apply's: what ran before the last change."""
    applied = [
        r.revision
        for r in store.runs(500)
        if r.result == "succeeded" and r.revision and not r.revision.endswith("+dirty")
    ]
    if not applied:
        raise InputError(
            [
                Problem(
                    "--to",
                    message="the state records no successful apply of a committed revision",
                    hint="name the revision to go back to: --to REVISION",
                )
            ]
        )
    last = applied[0]
    earlier = next((r for r in applied if r != last), None)
    if earlier is None:
        raise InputError(
            [
                Problem(
                    "--to",
                    message=f"every successful apply recorded was of {last[:12]}: there is no"
                    " earlier revision to go back to",
                    hint="name the revision to go back to: --to REVISION",
                )
            ]
        )
    return earlier
