"""`plan`: what applying would do now, and with `--base`, what a change to the
manifests itself changes."""

from __future__ import annotations

import asyncio
import json
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from reconciler import checkout
from reconciler import manifest_changes as review_module
from reconciler.checkout import Checkout
from reconciler.cli.common import (
    MassDeleteOpt,
    MaxDeletesOpt,
    NoDepsOpt,
    ProfileOpt,
    PruneOpt,
    RefOpt,
    SelectOpt,
    SourceArg,
    VerboseOpt,
    _connector,
    _fetch,
    _load,
    out,
)
from reconciler.errors import InputError, Problem
from reconciler.manifest_changes import Review
from reconciler.manifests import LoadOptions, Manifests, load, load_configuration
from reconciler.manifests.config import configuration_changes
from reconciler.manifests.snapshot import snapshot
from reconciler.plan import Plan, PlanOptions, Source
from reconciler.reconcile import (
    Connector,
    Request,
    plan_options,
    reconcile,
)
from reconciler.render import plan as plan_render
from reconciler.state import open_store


class PlanFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


def options_from_flags(
    manifests: Manifests,
    select: list[str] | None,
    no_deps: bool,
    prune: bool | None,
    max_deletes: int | None,
    allow_mass_delete: bool,
) -> PlanOptions:
    """The plan options of `plan` and `apply`: the settings with the flags given."""
    if no_deps and not (select or manifests.settings.select):
        raise InputError(
            [
                Problem(
                    "--no-deps", message="--no-deps only applies with --select", hint="add --select"
                )
            ]
        )
    return plan_options(
        manifests.settings,
        select=select,
        with_dependencies=not no_deps,
        prune=prune,
        max_deletes=max_deletes,
        allow_mass_delete=allow_mass_delete,
    )


async def _make_plan(
    manifests: Manifests, connector: Connector, options: PlanOptions, source: Source
) -> Plan:
    store = open_store(manifests.settings.state, manifests.root)
    try:
        result = await reconcile(manifests, connector, store, Request("plan", options, source))
    finally:
        store.close()
    return result.planned.plan


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
    options = options_from_flags(manifests, select, no_deps, prune, max_deletes, allow_mass_delete)
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
