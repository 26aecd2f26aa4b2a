"""Layer 1: manifest files to typed resources.

Rule: imports only `reconciler.errors` and libraries; no I/O beyond reading the files it
is given (manifests, reconciler.yaml, package folders, `${file:...}` values) and, when
asked (`LoadOptions(cache=True)`), its own cache files in the user's cache folder
(`cachefile`, `parse_cache`), never inside the manifests folder. Nothing here knows
about platforms' APIs, state or the command line.
"""

from reconciler.manifests.config import Settings
from reconciler.manifests.loader import LoadOptions, Manifests, load, load_configuration
from reconciler.manifests.resources import Origin, Reference, Resource, ResourceId
from reconciler.manifests.selection import select_matches
from reconciler.manifests.values import Sensitive

__all__ = [
    "LoadOptions",
    "Manifests",
    "Origin",
    "Reference",
    "Resource",
    "ResourceId",
    "Sensitive",
    "Settings",
    "load",
    "load_configuration",
    "select_matches",
]
