"""Package manifests: their source folders and artifacts checked before anything runs."""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import InputError
from reconciler.manifests.discovery import display_name, inside
from reconciler.manifests.documents import read_documents
from reconciler.manifests.kinds.insights import PackageSpec
from reconciler.manifests.package_files import PackageFileError, package_files
from reconciler.manifests.parse_cache import ParseCache
from reconciler.manifests.reporting import ProblemAt, Reporter
from reconciler.manifests.resources import Resource


def check_package(
    resource: Resource,
    file: Path,
    root: Path,
    problem: ProblemAt,
    report: Reporter,
    cache: ParseCache | None = None,
    listings: dict[Path, list[tuple[str, Path]]] | None = None,
) -> Path | None:
    """Problems with a Package's source or artifact; its resolved path when there are none."""
    spec = resource.spec
    assert isinstance(spec, PackageSpec)
    field = "source" if spec.source is not None else "artifact"
    relative = spec.source if spec.source is not None else spec.artifact
    assert relative is not None
    raw = file.parent / relative
    where = ("spec", field)
    if ".." in Path(relative).parts and not inside(raw.resolve(), root):
        problem(
            where,
            f"spec.{field} '{relative}' lies outside the manifests repository",
            "keep package folders inside the repository, so a commit pins them",
        )
        return None
    if not raw.exists():
        problem(
            where,
            f"spec.{field} '{relative}' does not exist",
            f"create it, or fix the path (relative to {resource.origin.file})",
        )
        return None
    resolved = raw.resolve()
    if not inside(resolved, root):
        problem(
            where,
            f"spec.{field} '{relative}' leads outside the manifests repository through a"
            " symbolic link",
            "replace the link with the folder itself",
        )
        return None
    if field == "artifact":
        if not resolved.is_file() or resolved.suffix != ".kxi":
            problem(
                where,
                f"spec.artifact '{relative}' is not a .kxi file",
                "point artifact at a built .kxi archive, or use source: for a folder",
            )
        else:
            return resolved
        return None
    if not resolved.is_dir():
        problem(
            where,
            f"spec.source '{relative}' is not a folder",
            "point source at a package folder, or use artifact: for a .kxi file",
        )
        return None
    manifest = resolved / "manifest.yaml"
    if not manifest.is_file():
        problem(
            where,
            f"spec.source '{relative}' has no manifest.yaml",
            "a kdb Insights package folder has manifest.yaml at its top",
        )
        return None
    try:
        documents = read_documents(manifest, display_name(manifest, root), cache)
    except InputError as exc:
        report.problems.extend(exc.problems)
        return None
    package = documents[0].data if documents else None
    if not isinstance(package, dict):
        problem(
            where,
            f"{relative}/manifest.yaml is not a mapping",
            "see the kdb Insights package layout",
        )
        return None
    if package.get("name") != resource.name:
        problem(
            ("metadata", "name"),
            f"metadata.name '{resource.name}' differs from name '{package.get('name')}' in"
            f" {relative}/manifest.yaml",
            "make the two names the same",
        )
    if str(package.get("version")) != spec.version:
        problem(
            ("spec", "version"),
            f"spec.version '{spec.version}' differs from version '{package.get('version')}' in"
            f" {relative}/manifest.yaml",
            "make the two versions the same",
        )
    try:
        listed = package_files(resolved)
        if listings is not None:
            listings[resolved] = listed
    except PackageFileError as exc:
        problem(where, f"spec.source '{relative}': {exc}", exc.hint)
        return None
    return resolved
