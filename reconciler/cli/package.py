"""`package build`: the `.kxi` an apply would push, built locally to inspect or share."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from ruamel.yaml import YAML

from reconciler.cli.common import FormatOpt, ValidateFormat, _connector, out
from reconciler.errors import BadValue, InputError, OperationalError, Problem
from reconciler.manifests import Manifests, load_configuration
from reconciler.manifests.documents import read_documents
from reconciler.providers.insights.artifact import build as build_artifact
from reconciler.providers.insights.artifact import unpack
from reconciler.providers.insights.assembly import convert as convert_assembly
from reconciler.providers.insights.provider import InsightsProvider

app = typer.Typer(
    name="package",
    help="kdb Insights packages: build the artifact an apply would push; convert an assembly.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
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
    ctx: typer.Context,
    assembly: Annotated[Path, typer.Argument(help="A kxi-controller assembly YAML file.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the package folder into.")
    ] = Path(),
    version: Annotated[
        str, typer.Option("--version", help="The package's version (local conversion).")
    ] = "0.0.1",
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Convert on this kdb Insights target's Package Manager (migrations.convert)"
            " instead of locally; the target as reconciler.yaml in --manifests names it.",
        ),
    ] = None,
    manifests: Annotated[
        Path, typer.Option("--manifests", help="The folder whose reconciler.yaml names --target.")
    ] = Path(),
) -> int:
    """Convert a legacy assembly into a package folder OUT/NAME and its Package manifest
    OUT/NAME.package.yaml: on a target's Package Manager when --target is given (as KX's
    client does), locally otherwise, saying what could not be mapped."""
    if target is not None:
        files, unmapped, version = _on_target(ctx, assembly, manifests, target)
        how = f"converted by the Package Manager of target '{target}'"
    else:
        documents = read_documents(assembly, str(assembly))
        data = documents[0].data if len(documents) == 1 else None
        try:
            converted = convert_assembly(data, version)
        except BadValue as exc:
            raise InputError([Problem(str(assembly), message=exc.message, hint=exc.hint)]) from None
        files = {path: _yaml_text(document) for path, document in converted.files.items()}
        unmapped = converted.unmapped
        how = "converted locally"
    name = str(_manifest_of(files, assembly).get("name"))
    folder = out_dir / name
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
    for relative, text in files.items():
        written = (folder / relative).resolve()
        if not written.is_relative_to(folder.resolve()):
            raise InputError(
                [Problem(str(assembly), message=f"the package names a file outside it: {relative}")]
            )
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(text, encoding="utf-8")
    manifest = out_dir / f"{name}.package.yaml"
    manifest.write_text(
        _yaml_text(
            {
                "apiVersion": "insights/v1",
                "kind": "Package",
                "metadata": {"name": name},
                "spec": {"version": version, "source": name},
            }
        ),
        encoding="utf-8",
    )
    out.print(f"wrote {folder}/ ({len(files)} files) and {manifest}: {how}", markup=False)
    if unmapped:
        out.print(
            "not mapped (no place in a package; carry them over by hand): " + ", ".join(unmapped),
            markup=False,
        )
    return 0


def _yaml_text(document: Any) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def _manifest_of(files: dict[str, str], assembly: Path) -> dict[str, Any]:
    manifest = YAML(typ="safe").load(files.get("manifest.yaml", "")) or {}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("name"), str):
        raise InputError([Problem(str(assembly), message="the conversion made no manifest")])
    return manifest


def _on_target(
    ctx: typer.Context, assembly: Path, manifests: Path, target: str
) -> tuple[dict[str, str], list[str], str]:
    """The package files the target's Package Manager makes of the assembly."""
    root, settings = load_configuration(manifests)
    config = settings.targets.get(target)
    if config is None or config.provider != "insights":
        raise InputError(
            [
                Problem(
                    "--target",
                    message=f"no kdb Insights target named '{target}' in {root}",
                    hint="name a target with provider: insights in reconciler.yaml",
                )
            ]
        )
    loaded = Manifests(root, None, settings, (), (), {})

    async def run() -> bytes:
        provider = _connector(ctx)(target, config, loaded)
        try:
            if not isinstance(provider, InsightsProvider):
                raise InputError([Problem("--target", message=f"'{target}' is not kdb Insights")])
            return await provider.client.convert_assembly(assembly.read_bytes())
        finally:
            await provider.aclose()

    data = asyncio.run(run())
    try:
        contents = unpack(data)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise OperationalError(
            f"target '{target}' answered a conversion that is not a .kxi: {exc}"
        ) from None
    files = {path: body.decode("utf-8", "replace") for path, body in contents.items()}
    version = str(_manifest_of(files, assembly).get("version") or "0.0.1")
    return files, [], version
