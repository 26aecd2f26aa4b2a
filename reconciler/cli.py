"""Layer 7: the command line (typer).

Rule: the only place that reads flags, prints, and maps errors to exit codes:
0 success, 1 operational error, 2 changes pending (plan --detailed-exitcode),
3 invalid input (nothing contacted). Bad flags are invalid input too: exit 3.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from reconciler import __version__, graph
from reconciler.errors import InputError, ReconcilerError
from reconciler.manifests import LoadOptions, Manifests, load
from reconciler.manifests.schemas import all_schemas, dumps
from reconciler.render import graph as graph_render
from reconciler.render import validation as validation_render

app = typer.Typer(
    name="reconciler",
    help="Declarative GitOps reconciler for kdb Insights and Pachyderm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PathArg = Annotated[
    Path,
    typer.Argument(help="A manifests folder (or one manifest file).", show_default=True),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="A profile of reconciler.yaml.")
]


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"


class GraphFormat(StrEnum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


def _load(path: Path, profile: str | None, *, variables: bool = True) -> Manifests:
    return load(path, LoadOptions(profile=profile, resolve_variables=variables))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(
    path: PathArg = Path(),
    profile: ProfileOpt = None,
    output: Annotated[
        ValidateFormat, typer.Option("--format", "-f", help="text or json.")
    ] = ValidateFormat.text,
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
        manifests = _load(path, profile, variables=not no_variables)
        built = graph.build(manifests.resources)
        selected: set[str] | None = None
        if manifests.settings.select:
            graph.check_selectors(manifests.settings.select)
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
    path: PathArg = Path(),
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
    manifests = _load(path, profile)
    built = graph.build(manifests.resources)
    selectors = list(select or manifests.settings.select)
    if selectors:
        graph.check_selectors(selectors)
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
) -> int:
    """Write JSON Schemas of every manifest kind and of reconciler.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schemas = all_schemas()
    for name, content in schemas.items():
        (out_dir / name).write_text(dumps(content), encoding="utf-8")
    out.print(f"wrote {len(schemas)} schemas to {out_dir}/")
    out.print(
        "put this first line in a manifest for editor completion:\n"
        f"  # yaml-language-server: $schema={out_dir}/manifest.schema.json",
        markup=False,
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command and exit with its code; never a traceback for input."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="reconciler", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Abort:
        err.print("aborted")
        code = 1
    except InputError as exc:
        err.print(validation_render.problems_text(exc.problems), markup=False)
        code = exc.exit_code
    except ReconcilerError as exc:
        err.print(f"error: {exc}", markup=False)
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
    sys.exit(code)


if __name__ == "__main__":
    main()
