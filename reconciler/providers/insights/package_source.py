"""A Package's content: its source folder or artifact, checked while the manifests load
(the `content` of the Package kind), so a missing folder is reported at its line."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.errors import InputError
from reconciler.manifests.catalog import Content, ContentRequest
from reconciler.manifests.discovery import display_name, inside
from reconciler.manifests.documents import read_documents
from reconciler.providers.insights.kinds import PackageSpec
from reconciler.providers.insights.package_files import PackageFileError, package_files


def package_content(request: ContentRequest) -> Content | None:
    """A Package's source folder (with its files) or artifact; None with the problems
    reported."""
    resource, file, root = request.resource, request.file, request.root
    problem, report, cache = request.problem, request.report, request.cache
    spec = resource.spec
    assert isinstance(spec, PackageSpec)
    field = "source" if spec.source is not None else "artifact"
    relative = spec.source if spec.source is not None else spec.artifact
    assert relative is not None
    raw = file.parent / relative
    where = ("spec", field)
    # Judged by the path as written before anything on disk is looked at: whether a
    # path outside exists must not show in the answer (an oracle on the runner's files).
    if not inside(Path(os.path.normpath(file.parent.resolve() / relative)), root):
        absolute = Path(relative).is_absolute()
        problem(
            where,
            f"spec.{field} '{relative}' "
            + ("is an absolute path outside" if absolute else "lies outside")
            + " the manifests repository",
            "keep package folders inside the repository and name them relative to the"
            " manifest, so a commit pins them",
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
            return Content(resolved, ((resolved.name, resolved),))
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
    except PackageFileError as exc:
        problem(where, f"spec.source '{relative}': {exc}", exc.hint)
        return None
    return Content(resolved, tuple(listed))
