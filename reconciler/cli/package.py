"""`package build`: the `.kxi` an apply would push, built locally to inspect or share."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from ruamel.yaml import YAML

from reconciler.cli.common import FormatOpt, ValidateFormat, out
from reconciler.errors import BadValue, InputError, Problem
from reconciler.manifests.documents import read_documents
from reconciler.providers.insights.artifact import build as build_artifact
from reconciler.providers.insights.assembly import convert as convert_assembly

app = typer.Typer(
    name="package",
    help="kdb Insights packages: build the artifact an apply would push; convert an assembly.",
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


@app.command()
def convert(
    assembly: Annotated[Path, typer.Argument(help="A kxi-controller assembly YAML file.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the package folder into.")
    ] = Path(),
    version: Annotated[str, typer.Option("--version", help="The package's version.")] = "0.0.1",
) -> int:
    """Convert a legacy assembly into a package folder OUT/NAME and its Package manifest
    OUT/NAME.package.yaml, locally, and say what could not be mapped."""
    documents = read_documents(assembly, str(assembly))
    data = documents[0].data if len(documents) == 1 else None
    try:
        converted = convert_assembly(data, version)
    except BadValue as exc:
        raise InputError([Problem(str(assembly), message=exc.message, hint=exc.hint)]) from None
    folder = out_dir / converted.name
    if folder.exists():
        raise InputError(
            [
                Problem(
                    str(folder),
                    message="exists already: converting would overwrite it",
                    hint="remove it, or give another --out",
                )
            ]
        )
    yaml = YAML()
    yaml.default_flow_style = False
    for relative, document in converted.files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8") as handle:
            yaml.dump(document, handle)
    manifest = out_dir / f"{converted.name}.package.yaml"
    with manifest.open("w", encoding="utf-8") as handle:
        yaml.dump(
            {
                "apiVersion": "insights/v1",
                "kind": "Package",
                "metadata": {"name": converted.name},
                "spec": {"version": version, "source": converted.name},
            },
            handle,
        )
    out.print(f"wrote {folder}/ ({len(converted.files)} files) and {manifest}", markup=False)
    if converted.unmapped:
        out.print(
            "not mapped (no place in a package; carry them over by hand): "
            + ", ".join(converted.unmapped),
            markup=False,
        )
    return 0
