"""Selectors: which resources a `--select` or a profile's `select` names."""

from __future__ import annotations

from fnmatch import fnmatchcase

from reconciler.manifests.reporting import suggest
from reconciler.manifests.resources import Resource


def select_matches(selector: str, resource: Resource) -> bool:
    """Whether a `--select` / profile `select` entry names `resource`.

    Forms: a kind (`Pipeline`), an id or id glob (`pachyderm:Pipeline/vision/*`, target
    optional), or comma-joined `field=glob` terms that must all hold, with field one of
    kind, target, project, name, or `label.<key>`.
    """
    selector = selector.strip()
    if "=" not in selector and "/" not in selector and ":" not in selector:
        return fnmatchcase(resource.kind, selector)
    if "=" not in selector:
        full = str(resource.id)
        short = full.split(":", 1)[1]
        return fnmatchcase(full, selector) or fnmatchcase(short, selector)
    for term in selector.split(","):
        field, _, pattern = term.partition("=")
        field = field.strip()
        pattern = pattern.strip()
        if field.startswith("label."):
            value = resource.metadata.labels.get(field[len("label.") :])
        else:
            value = {
                "kind": resource.kind,
                "target": resource.target,
                "project": resource.project,
                "name": resource.name,
            }.get(field)
        if value is None or not fnmatchcase(value, pattern):
            return False
    return True


SELECT_FIELDS = ("kind", "target", "project", "name", "label.<key>")


def check_selector(selector: str) -> str | None:
    """Why `selector` is malformed, or None."""
    if "=" not in selector:
        return None if selector.strip() else "an empty selector"
    for term in selector.split(","):
        field, sep, _ = term.partition("=")
        field = field.strip()
        if not sep or not (field in SELECT_FIELDS[:4] or field.startswith("label.")):
            match = suggest(field, SELECT_FIELDS[:4])
            return f"'{term}' is not FIELD=VALUE with FIELD one of {', '.join(SELECT_FIELDS)}" + (
                f"; did you mean '{match}'?" if match else ""
            )
    return None
