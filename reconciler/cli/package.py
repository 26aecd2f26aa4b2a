"""`package build`: the `.kxi` an apply would push, built locally to inspect or share."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.common import FormatOpt, ValidateFormat, out
from reconciler.errors import InputError, Problem
from reconciler.providers.insights.artifact import build as build_artifact

app = typer.Typer(
    name="package",
    help="kdb Insights packages: build the artifact an apply would push.",
    no_args_is_help=True,
)


@app.command()
def build(
    path: Annotated[Path, typer.Argument(help="A package folder (with manifest.yaml).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write NAME-VERSION.kxi into.")
    ] = Path(),
    output: FormatOpt = ValidateFormat.text,
) -> int:
    """Build PATH into NAME-VERSION.kxi exactly as `apply` would push it: a compressed
    zip of the folder's layout, `.kxignore` honoured. Prints its content digest (what
    reconciler compares, whatever the archive's bytes), its files and its components."""
    if not (path / "manifest.yaml").is_file():
        raise InputError(
            [
                Problem(
                    str(path),
                    message="is not a package folder: it has no manifest.yaml",
                    hint="give the folder a Package manifest's spec.source names",
                )
            ]
        )
    with tempfile.TemporaryDirectory(prefix="reconciler-package-") as scratch:
        artifact = build_artifact(path.resolve(), Path(scratch), str(path))
        data = artifact.read()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{artifact.name}-{artifact.version}.kxi"
    target.write_bytes(data)
    if output is ValidateFormat.json:
        report = {
            "artifact": str(target),
            "name": artifact.name,
            "version": artifact.version,
            "content": artifact.content,
            "bytes": len(data),
            "files": dict(artifact.files),
            "components": list(artifact.components),
        }
        out.print(json.dumps(report, indent=2), markup=False)
        return 0
    out.print(f"wrote {target} ({len(data)} bytes)", markup=False)
    out.print(f"  content  {artifact.content}", markup=False)
    out.print(f"  components  {', '.join(artifact.components) or '(none)'}", markup=False)
    out.print(f"  {len(artifact.files)} files:", markup=False)
    for name in artifact.files:
        out.print(f"    {name}", markup=False)
    return 0
