"""`apply`: make the targets match the manifests, or apply exactly a saved plan."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from reconciler import checkout
from reconciler.checkout import Checkout
from reconciler.cli.common import (
    FormatOpt,
    MassDeleteOpt,
    NoDepsOpt,
    ProfileOpt,
    PruneOpt,
    RefOpt,
    SelectOpt,
    ValidateFormat,
    VerboseOpt,
    _connector,
    _fetch,
    _load,
    confirm,
    err,
    out,
)
from reconciler.cli.plan import options_from_flags
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.execute import ExecuteOptions, Listener
from reconciler.manifests import Manifests
from reconciler.plan import Plan, PlanOptions, Source
from reconciler.reconcile import (
    Connector,
    Planned,
    Request,
    Result,
    reconcile,
)
from reconciler.redact import masked
from reconciler.render import plan as plan_render
from reconciler.render import progress as progress_render
from reconciler.state import open_store
from reconciler.state.locks import LockOptions


def _refuse_overrides(**given: object) -> None:
    """A saved plan fixes what it was made with: another value now would apply a plan
    nobody reviewed (a staging plan to prod, a pruning plan with other guards)."""
    named = [
        "--" + name.replace("_", "-")
        for name, value in given.items()
        if value not in (None, False, [], ())
    ]
    if named:
        raise InputError(
            [
                Problem(
                    "--plan",
                    message=f"{', '.join(named)} cannot be given with --plan: the saved plan"
                    " fixes its source, revision, profile, selection and guards",
                    hint="leave them out, or make a new plan with them (reconciler plan --out)",
                )
            ]
        )


def _saved_origin(saved: Plan, source: str | None) -> checkout.Origin:
    """Where a saved plan's manifests are: the source it records. A SOURCE given as
    well must be that same one (a plan made in folder A never applies in folder B)."""
    recorded = saved.source.path
    if source is None:
        location = recorded
    else:
        location = source
        given = checkout.Origin.parse(source).recorded
        if given != recorded:
            raise InputError(
                [
                    Problem(
                        "--plan",
                        message=f"the plan was made from {recorded}, not from {masked(given)}",
                        hint="apply it where it was made (leave SOURCE out), or make a new plan"
                        " here",
                    )
                ]
            )
    if checkout.is_remote(location):
        parsed = checkout.Origin.parse(location)
        revision = saved.source.revision
        if revision is None or not checkout.COMMIT.match(revision):
            raise InputError(
                [Problem("--plan", message="the plan records no commit of its git source")]
            )
        return checkout.Origin(parsed.location, revision, parsed.subdir)
    return checkout.Origin.parse(location)


def _same_revision(saved: Plan, fetched: Checkout) -> None:
    if fetched.origin.remote or saved.source.revision == fetched.revision:
        return
    raise InputError(
        [
            Problem(
                "--plan",
                message=f"{fetched.origin.recorded} is at {fetched.revision or 'no commit'};"
                f" the plan was made at {saved.source.revision or 'no commit'}",
                hint="check out the commit the plan was made at, or make a new plan",
            )
        ]
    )


MAX_PLAN_BYTES = 512 << 20
"""The largest plan file read (a plan of 10,000 resources with their specs is tens of
MiB): a plan file is untrusted, and is read whole."""


def _read_plan(file: Path) -> Plan:
    try:
        # Read as a stream, not by its size: `--plan <(...)` is a pipe.
        with file.open("rb") as handle:
            raw = handle.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise InputError(
            [Problem(str(file), message=f"cannot read the plan: {exc.strerror}")]
        ) from None
    if len(raw) > MAX_PLAN_BYTES:
        raise InputError(
            [
                Problem(
                    str(file),
                    message=f"not a usable plan file: larger than {MAX_PLAN_BYTES >> 20} MiB",
                    hint="write plans with `reconciler plan --out FILE` and do not edit them",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            [
                Problem(
                    str(file),
                    message="not a usable plan file: not UTF-8 text",
                    hint="write plans with `reconciler plan --out FILE` and do not edit them",
                )
            ]
        ) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            [
                Problem(
                    str(file),
                    message=f"not a usable plan file: not JSON ({exc})",
                    hint="write plans with `reconciler plan --out FILE` and do not edit them",
                )
            ]
        ) from None
    return Plan.from_json(data, str(file))


def apply(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            help="A manifests folder, or a git URL (default: the plan's, or the current folder).",
        ),
    ] = None,
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="Apply exactly this saved plan (from plan --out)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    output: FormatOpt = ValidateFormat.text,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Calls in flight at most.")
    ] = 8,
    select: SelectOpt = None,
    no_deps: NoDepsOpt = False,
    prune: PruneOpt = None,
    max_deletes: Annotated[
        int | None,
        typer.Option("--max-deletes", min=0, help="Refuse a plan that deletes more (default 10)."),
    ] = None,
    allow_mass_delete: MassDeleteOpt = False,
    verbose: VerboseOpt = False,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            min=0,
            help="Seconds to wait while another apply holds a target's lock (default: fail"
            " at once, naming the holder).",
        ),
    ] = 0.0,
) -> int:
    """Make the targets match the manifests (asks first unless --yes). Holds the lock of
    every target it touches for the whole run."""
    saved = _read_plan(plan_file) if plan_file is not None else None
    if saved is not None:
        _refuse_overrides(
            ref=ref,
            profile=profile,
            select=select,
            no_deps=no_deps,
            prune=prune,
            max_deletes=max_deletes,
            allow_mass_delete=allow_mass_delete,
        )
        origin = _saved_origin(saved, source)
        try:
            fetched = checkout.fetch(origin)
        except OperationalError as exc:
            if not origin.remote:
                raise
            raise OperationalError(
                f"{exc}\n  the plan records its git source without credentials: put the"
                f" token in {checkout.TOKEN_VARIABLE}, or give the URL with them as SOURCE"
            ) from exc
        _same_revision(saved, fetched)
        manifests = _load(fetched.folder, saved.source.profile)
        options = saved.options
    else:
        fetched = _fetch(source if source is not None else ".", ref)
        manifests = _load(fetched.folder, profile)
        options = options_from_flags(
            manifests, select, no_deps, prune, max_deletes, allow_mass_delete
        )
    return run_apply(
        _connector(ctx),
        fetched,
        manifests,
        options,
        saved=saved,
        yes=yes,
        text=output is ValidateFormat.text,
        verbose=verbose,
        concurrency=concurrency,
        lock_timeout=lock_timeout,
    )


def run_apply(
    connector: Connector,
    fetched: Checkout,
    manifests: Manifests,
    options: PlanOptions,
    *,
    saved: Plan | None = None,
    yes: bool = False,
    text: bool = True,
    verbose: bool = False,
    concurrency: int = 8,
    lock_timeout: float = 0.0,
    question: str = "Apply these changes?",
) -> int:
    """Plan, show, ask, apply, and report, as `apply` does (and `rollback`)."""
    where = Source(fetched.origin.recorded, fetched.revision, manifests.settings.profile)

    def approve(planned: Planned, recovered: tuple[str, ...]) -> bool:
        if recovered:
            err.print(
                f"recovered {len(recovered)} resource(s) that an earlier run created but"
                " had not recorded (it was killed, or the answer was lost): "
                + ", ".join(recovered),
                markup=False,
            )
        if text:
            plan_render.print_text(planned.plan, out, verbose=verbose)
        if planned.plan.pending and not planned.plan.errors and not yes:
            confirm(question, "apply")
        return True

    stop = asyncio.Event()
    request = Request(
        "apply",
        options,
        where,
        saved=saved,
        lock=LockOptions(timeout=lock_timeout),
        execute=ExecuteOptions(
            concurrency=concurrency, revision=fetched.revision, profile=manifests.settings.profile
        ),
        approve=approve,
        progress=lambda planned: _progress(planned, text, stop),
        stop=stop,
    )

    async def run() -> Result:
        store = open_store(manifests.settings.state, manifests.root)
        try:
            return await reconcile(manifests, connector, store, request)
        finally:
            store.close()

    result = asyncio.run(run())
    planned, outcome = result.planned, result.outcome
    if planned.plan.errors:
        if not text:
            out.print(
                json.dumps({"errors": [str(e) for e in planned.plan.errors]}, indent=2),
                markup=False,
            )
        return 1
    if outcome is None:
        if not text:
            out.print(json.dumps({"result": "no changes"}), markup=False)
        return 0
    if text:
        out.print(progress_render.summary(outcome))
    else:
        out.print(progress_render.outcome_json(outcome), markup=False)
    return 0 if outcome.ok else 1


@contextmanager
def _progress(planned: Planned, text: bool, stop: asyncio.Event) -> Iterator[Listener]:
    """The progress of an apply on the terminal; Ctrl-C asks for a graceful stop."""
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        err.print("stopping: no new calls; waiting for those in flight (Ctrl-C again to abort)")
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    # Off the main thread, or on Windows, asyncio cannot take signals: Ctrl-C then aborts.
    graceful = sys.platform != "win32" and threading.current_thread() is threading.main_thread()
    if graceful:
        loop.add_signal_handler(signal.SIGINT, interrupted)
    total = sum(1 for a in planned.plan.actions if a.mutates or a.adopt)
    listener: progress_render.Lines = (
        progress_render.Bar(out, total)
        if text and out.is_terminal
        else progress_render.Lines(out if text else err)
    )
    try:
        with listener:
            yield listener
    finally:
        if graceful:
            loop.remove_signal_handler(signal.SIGINT)
