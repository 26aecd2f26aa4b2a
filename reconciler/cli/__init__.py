"""Layer 7: the command line (typer).

Rule: the only place that reads flags, prints, and maps errors to exit codes:
0 success, 1 operational error, 2 changes pending (plan --detailed-exitcode),
3 invalid input (nothing contacted). Bad flags are invalid input too: exit 3.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.table import Table

from reconciler import __version__, checkout, graph, schemas
from reconciler import review as review_module
from reconciler.checkout import Checkout
from reconciler.cli import sandbox as sandbox_cli
from reconciler.cli import serve as serve_cli
from reconciler.cli import state as state_cli
from reconciler.cli import watch as watch_cli
from reconciler.cli.common import (
    FormatOpt,
    ProfileOpt,
    RefOpt,
    SourceArg,
    ValidateFormat,
    _connector,
    _fetch,
    _load,
    confirm,
    err,
    out,
)
from reconciler.engine import Connector, Planned, Session, diagnose
from reconciler.errors import InputError, OperationalError, Problem, ReconcilerError
from reconciler.execute import ExecuteOptions, Outcome
from reconciler.manifests import LoadOptions, Manifests, load, load_configuration
from reconciler.manifests.catalog import installed
from reconciler.manifests.config import configuration_changes
from reconciler.manifests.schemas import all_schemas, dumps
from reconciler.manifests.snapshot import snapshot
from reconciler.plan import Plan, PlanOptions, Source
from reconciler.redact import masked
from reconciler.render import graph as graph_render
from reconciler.render import plan as plan_render
from reconciler.render import progress as progress_render
from reconciler.render import validation as validation_render
from reconciler.review import Review
from reconciler.state import open_store
from reconciler.state.locks import LockOptions

CONTRACT_FILE = "insights-package-manager-v2.openapi.yaml"

app = typer.Typer(
    name="reconciler",
    help="Declarative GitOps reconciler for kdb Insights and Pachyderm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(state_cli.app, name="state")
app.command("status")(state_cli.status)
app.command("unlock")(state_cli.unlock)
app.command("serve")(serve_cli.serve)
app.command("watch")(watch_cli.watch)


class PlanFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


class GraphFormat(StrEnum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(
    source: SourceArg = ".",
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    output: FormatOpt = ValidateFormat.text,
    no_variables: Annotated[
        bool,
        typer.Option(
            "--no-variables",
            help="Check ${env:...}/${file:...} references for form only, without reading them"
            " (for pre-commit hooks, where secrets are absent).",
        ),
    ] = False,
) -> int:
    """Check manifests and configuration without contacting anything."""
    try:
        fetched = _fetch(source, ref)
        tracked = checkout.tracked_state(fetched)
        if tracked:
            err.print(
                f"warning: git tracks {len(tracked)} file(s) under {checkout.STATE_FOLDER}/"
                f" ({tracked[0]}{', ...' if len(tracked) > 1 else ''}): that folder holds"
                " local state and the sandbox, and a clone of this repository will refuse"
                f" it; run: git rm -r --cached {checkout.STATE_FOLDER} and add it to"
                " .gitignore",
                markup=False,
            )
        manifests = _load(fetched.folder, profile, variables=not no_variables)
        built = graph.build(manifests.resources)
        selected: set[str] | None = None
        if manifests.settings.select:
            graph.check_selectors(manifests.settings.select, built)
            selected = {str(rid) for rid in built.select(manifests.settings.select)}
    except InputError as exc:
        if output is not ValidateFormat.json:
            raise
        out.print(validation_render.problems_json(exc.problems), markup=False)
        return exc.exit_code
    if output is ValidateFormat.json:
        out.print(validation_render.summary_json(manifests, selected), markup=False)
        return 0
    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("target")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for target, kinds in validation_render.counts(manifests).items():
        for kind, number in kinds.items():
            table.add_row(target, kind, str(number))
    total = len(manifests.resources)
    files = len(manifests.files)
    out.print(table)
    scope = f", profile {manifests.settings.profile}" if manifests.settings.profile else ""
    chosen = f"; {len(selected)} selected" if selected is not None else ""
    out.print(
        f"[green]valid[/green]: {total} resource{'s' if total != 1 else ''} in {files}"
        f" file{'s' if files != 1 else ''}{scope}{chosen}; dependency depth {built.depth()}"
    )
    return 0


@app.command("graph")
def graph_command(
    source: SourceArg = ".",
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    output: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="text, dot or mermaid.")
    ] = GraphFormat.text,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", "-s", help="Only these resources and what they depend on."),
    ] = None,
) -> int:
    """Show the dependency graph, in creation order."""
    manifests = _load(_fetch(source, ref).folder, profile)
    built = graph.build(manifests.resources)
    selectors = list(select or manifests.settings.select)
    if selectors:
        graph.check_selectors(selectors, built)
        keep = built.select(selectors)
        built = graph.Graph(
            {rid: r for rid, r in built.resources.items() if rid in keep},
            built.dag.subgraph(keep).copy(),
        )
    render = {
        GraphFormat.text: graph_render.as_text,
        GraphFormat.dot: graph_render.as_dot,
        GraphFormat.mermaid: graph_render.as_mermaid,
    }[output]
    out.print(render(built), markup=False)
    return 0


@app.command()
def schema(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the JSON Schemas into.")
    ] = Path("specs"),
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider", "-p", help="Only these installed providers (default: every one)."
        ),
    ] = None,
) -> int:
    """Write JSON Schemas of every manifest kind and of reconciler.yaml (for the
    installed provider plugins), and the kdb Insights API contract the provider assumes."""
    catalog = installed()
    unknown = sorted(set(provider or ()) - set(catalog.plugins))
    if unknown:
        raise InputError(
            [
                Problem(
                    "--provider",
                    message=f"no provider plugin named {', '.join(unknown)} is installed",
                    hint=f"installed: {', '.join(sorted(catalog.plugins))}",
                )
            ]
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = all_schemas(catalog.only(provider) if provider else catalog)
    for name, content in written.items():
        (out_dir / name).write_text(dumps(content), encoding="utf-8")
    (out_dir / CONTRACT_FILE).write_text(schemas.text(schemas.PACKAGE_MANAGER), encoding="utf-8")
    out.print(f"wrote {len(written)} schemas and {CONTRACT_FILE} to {out_dir}/")
    out.print(
        "put this first line in a manifest for editor completion:\n"
        f"  # yaml-language-server: $schema={out_dir}/manifest.schema.json",
        markup=False,
    )
    return 0


# --- plan and apply -----------------------------------------------------------------------


SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        "-s",
        help="Only these resources (id, Kind, Kind/glob, label=value) and what they depend on.",
    ),
]
NoDepsOpt = Annotated[
    bool, typer.Option("--no-deps", help="With --select: leave out what the selection uses.")
]
PruneOpt = Annotated[
    bool | None,
    typer.Option("--prune/--no-prune", help="Delete owned resources that left the manifests."),
]
DEFAULT_MAX_DELETES = 10
MaxDeletesOpt = Annotated[
    int, typer.Option("--max-deletes", min=0, help="Refuse a plan that deletes more.")
]
MassDeleteOpt = Annotated[
    bool,
    typer.Option("--allow-mass-delete", help="Allow deleting every owned resource of a target."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show unchanged resources too.")]


def _plan_options(
    manifests: Manifests,
    select: list[str] | None,
    no_deps: bool,
    prune: bool | None,
    max_deletes: int | None,
    allow_mass_delete: bool,
) -> PlanOptions:
    selectors = tuple(select or manifests.settings.select)
    if no_deps and not selectors:
        raise InputError(
            [
                Problem(
                    "--no-deps", message="--no-deps only applies with --select", hint="add --select"
                )
            ]
        )
    return PlanOptions(
        select=selectors,
        with_dependencies=not no_deps,
        prune=manifests.settings.prune if prune is None else prune,
        max_deletes=DEFAULT_MAX_DELETES if max_deletes is None else max_deletes,
        allow_mass_delete=allow_mass_delete,
    )


async def _make_plan(
    manifests: Manifests, connector: Connector, options: PlanOptions, source: Source
) -> Plan:
    store = open_store(manifests.settings.state, manifests.root)
    try:
        async with Session(manifests, connector, store) as session:
            planned = await session.plan(options, source)
    finally:
        store.close()
    return planned.plan


@app.command()
def plan(
    ctx: typer.Context,
    source: SourceArg = ".",
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    output: Annotated[
        PlanFormat, typer.Option("--format", "-f", help="text, markdown or json.")
    ] = PlanFormat.text,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the plan (JSON) to this file.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 2 when there are changes to apply."),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="A git ref (e.g. origin/main): also show what changed in the manifests"
            " since it, resource by resource, as a pull request would.",
        ),
    ] = None,
    trusted_config: Annotated[
        str | None,
        typer.Option(
            "--trusted-config",
            help="A git ref (the base branch): refuse, contacting nothing, when the"
            " targets, their auth, the state or the file policy differ from that ref's"
            " reconciler.yaml. For pull-request plans: a pull request must not choose"
            " where the runner's credentials are sent.",
        ),
    ] = None,
    select: SelectOpt = None,
    no_deps: NoDepsOpt = False,
    prune: PruneOpt = None,
    max_deletes: MaxDeletesOpt = 10,
    allow_mass_delete: MassDeleteOpt = False,
    verbose: VerboseOpt = False,
) -> int:
    """Show what apply would do: reads only, changes nothing."""
    fetched = _fetch(source, ref)
    if trusted_config is not None:
        _same_configuration(fetched, trusted_config, profile)
    manifests = _load(fetched.folder, profile)
    options = _plan_options(manifests, select, no_deps, prune, max_deletes, allow_mass_delete)
    review = _review(fetched, base, profile) if base is not None else None
    where = Source(fetched.origin.recorded, fetched.revision, manifests.settings.profile)
    result = asyncio.run(_make_plan(manifests, _connector(ctx), options, where))
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(result.dumps(), encoding="utf-8")
    if output is PlanFormat.json:
        data = result.to_json()
        if review is not None:
            data["review"] = review.to_json()
        out.print(json.dumps(data, indent=2, default=str), markup=False)
    elif output is PlanFormat.markdown:
        out.print(plan_render.markdown(result, review), markup=False)
    else:
        if review is not None:
            plan_render.print_review(review, out)
        plan_render.print_text(result, out, verbose=verbose)
        if out_file is not None:
            out.print(
                f"plan written to {out_file}; apply it with: reconciler apply --plan {out_file}"
            )
    if result.errors:
        return 1
    return 2 if detailed_exitcode and result.pending else 0


def _same_configuration(head: Checkout, ref: str, profile: str | None) -> None:
    """Refuse when the head's reconciler.yaml sends credentials or state elsewhere than
    `ref`'s does: the parts compared are the ones a pull request could use to receive
    the runner's tokens (target URLs, TLS, auth as written), the state URL and which
    folders `${file:...}` may read."""
    with tempfile.TemporaryDirectory(prefix="reconciler-trusted-") as scratch:
        older = checkout.base(head, ref, Path(scratch))
        try:
            _, trusted = load_configuration(older.folder, LoadOptions(profile=profile))
        except InputError as exc:
            raise InputError(
                [
                    Problem(
                        "--trusted-config",
                        message=f"reconciler.yaml at {ref} does not load:"
                        f" {exc.problems[0].message if exc.problems else exc}",
                        hint="fix the base branch's configuration first",
                    )
                ]
            ) from None
    _, proposed = load_configuration(head.folder, LoadOptions(profile=profile))
    changed = configuration_changes(trusted, proposed)
    if changed:
        raise InputError(
            [
                Problem(
                    "reconciler.yaml",
                    message=f"this revision changes what {ref} trusts: {'; '.join(changed)}."
                    " A plan of it would send the runner's credentials where the change"
                    " says, so it is not made",
                    hint="change targets, auth and state in a pull request of their own,"
                    " reviewed and merged before plans use them",
                )
            ]
        )


def _review(head: Checkout, ref: str, profile: str | None) -> Review:
    """The manifests at `ref` against the head's, both with references unresolved."""
    with tempfile.TemporaryDirectory(prefix="reconciler-base-") as scratch:
        older = checkout.base(head, ref, Path(scratch))
        unresolved = LoadOptions(profile=profile, resolve_variables=False)
        after = snapshot(load(head.folder, unresolved))
        try:
            before = snapshot(load(older.folder, unresolved))
        except InputError as exc:
            first = exc.problems[0].format().splitlines()[0] if exc.problems else str(exc)
            first = first.replace(f"{Path(scratch).resolve()}/", "").replace(f"{scratch}/", "")
            return review_module.failed(ref, older.revision, f"the base does not load: {first}")
    return review_module.compare(
        before, after, base_ref=ref, base_revision=older.revision, head_revision=head.revision
    )


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


def _read_plan(file: Path) -> Plan:
    try:
        return Plan.from_json(json.loads(file.read_text(encoding="utf-8")))
    except OSError as exc:
        raise InputError(
            [Problem(str(file), message=f"cannot read the plan: {exc.strerror}")]
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InputError(
            [
                Problem(
                    str(file),
                    message=f"not a usable plan file: {exc}",
                    hint="write plans with `reconciler plan --out FILE` and do not edit them",
                )
            ]
        ) from None


@app.command()
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
        options = _plan_options(manifests, select, no_deps, prune, max_deletes, allow_mass_delete)
    where = Source(fetched.origin.recorded, fetched.revision, manifests.settings.profile)
    execute_options = ExecuteOptions(
        concurrency=concurrency, revision=fetched.revision, profile=manifests.settings.profile
    )
    text = output is ValidateFormat.text
    connector = _connector(ctx)

    async def run() -> tuple[Planned, Outcome | None]:
        store = open_store(manifests.settings.state, manifests.root)
        try:
            async with (
                Session(manifests, connector, store) as session,
                session.lock(LockOptions(timeout=lock_timeout), execute_options.revision),
            ):
                if saved is not None:
                    planned = await session.replan(saved)
                else:
                    planned = await session.plan(options, where)
                if session.recovered:
                    err.print(
                        f"recovered {len(session.recovered)} resource(s) that an interrupted"
                        " run created but had not recorded: " + ", ".join(session.recovered),
                        markup=False,
                    )
                if text:
                    plan_render.print_text(planned.plan, out, verbose=verbose)
                if planned.plan.errors or not planned.plan.pending:
                    return planned, None
                if not yes:
                    confirm("Apply these changes?", "apply")
                return planned, await _execute(session, planned, execute_options, text)
        finally:
            store.close()

    planned, outcome = asyncio.run(run())
    if planned.plan.errors:
        if not text:
            out.print(json.dumps({"errors": list(planned.plan.errors)}, indent=2), markup=False)
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


@app.command()
def doctor(
    ctx: typer.Context,
    source: SourceArg = ".",
    ref: RefOpt = None,
    profile: ProfileOpt = None,
    output: FormatOpt = ValidateFormat.text,
) -> int:
    """Check every target: reachable, authenticated, and for kdb Insights, whether the
    instance's /openapi has every operation the provider uses. Changes nothing."""
    manifests = _load(_fetch(source, ref).folder, profile)
    results = asyncio.run(diagnose(manifests, _connector(ctx)))
    healthy = all(check.ok for checks in results.values() for check in checks)
    if output is ValidateFormat.json:
        body = {
            target: [{"check": c.name, "ok": c.ok, "detail": masked(c.detail)} for c in checks]
            for target, checks in results.items()
        }
        out.print(json.dumps({"ok": healthy, "targets": body}, indent=2), markup=False)
        return 0 if healthy else 1
    table = Table(title=None, show_edge=False, header_style="bold")
    for column in ("target", "check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for target, checks in results.items():
        for check in checks:
            table.add_row(target, check.name, "ok" if check.ok else "FAILED", masked(check.detail))
    out.print(table)
    out.print("All checks passed." if healthy else "Some checks failed: see above.")
    return 0 if healthy else 1


async def _execute(
    session: Session, planned: Planned, options: ExecuteOptions, text: bool
) -> Outcome:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

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
            return await session.apply(planned, options, listener, stop)
    finally:
        if graceful:
            loop.remove_signal_handler(signal.SIGINT)


def main(argv: list[str] | None = None, connector: Connector | None = None) -> None:
    """Entry point: run a command and exit with its code; never a traceback for input.

    `connector` chooses the provider of each target (tests hand in fakes); by default
    each target's `provider` picks the platform subpackage.
    """
    command = typer.main.get_command(app)
    # A run builds hundreds of thousands of small objects (documents, specs,
    # observations), nearly all acyclic and kept until it ends: the cyclic collector
    # would scan them again and again (a third of a 10,000-resource plan with the default
    # thresholds, 7% with rare ones) to free almost nothing; reference counting frees the
    # rest. A command ends within minutes, so it runs without; `serve` and `watch`, which
    # run for days, switch it back on (`long_running`).
    enabled = gc.isenabled()
    gc.disable()
    try:
        result = command.main(
            args=argv, prog_name="reconciler", standalone_mode=False, obj=connector
        )
        code = result if isinstance(result, int) else 0
    except typer.Abort:
        err.print("aborted")
        code = 1
    except InputError as exc:
        err.print(masked(validation_render.problems_text(exc.problems)), markup=False)
        code = exc.exit_code
    except ReconcilerError as exc:
        err.print(masked(f"error: {exc}"), markup=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception as exc:
        # typer carries its own copy of click, whose UsageError is not public: know it by name.
        if not any(cls.__name__ == "UsageError" for cls in type(exc).__mro__):
            raise
        exc.show()  # type: ignore[attr-defined]
        code = InputError.exit_code
    finally:
        if enabled:
            gc.enable()
    sys.exit(code)


def run() -> NoReturn:
    """The `reconciler` command: `main`, then an exit that skips the interpreter's
    teardown. A large run holds a few hundred megabytes of small objects, and freeing
    them one by one at exit takes longer than many commands (0.2 s of a 2 s plan);
    every file, database and connection is closed by then, and output is flushed here."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`reconciler plan | head`)
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()
