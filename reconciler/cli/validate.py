"""`validate`, `graph` and `schema`: the commands that read the manifests and contact
nothing."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reconciler import checkout, graph, schemas
from reconciler.cli.common import (
    FormatOpt,
    ProfileOpt,
    RefOpt,
    SourceArg,
    ValidateFormat,
    _fetch,
    _load,
    err,
    out,
)
from reconciler.errors import InputError, Problem
from reconciler.manifests.catalog import installed
from reconciler.manifests.schemas import all_schemas, dumps
from reconciler.render import graph as graph_render
from reconciler.render import validation as validation_render

CONTRACT_FILE = "insights-package-manager-v2.openapi.yaml"


class GraphFormat(StrEnum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


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
