"""Layer 7: emulators of both platforms' APIs, for the quickstart and for tests.

Rule: imports `reconciler.errors`, `reconciler.schemas` (data), the Pachyderm provider's
cron parser (pachd's own rule, written once) and libraries (starlette, jsonschema) only;
imported by the composition root and the command line alone. Runs in-process for `url:
embedded` (through an ASGI transport; the built-in plugins name `embedded` below) or
over uvicorn for `sandbox serve`. It is a test double for the platforms, not a platform:
state lives in one SQLite file.
"""

from pathlib import Path
from typing import Any

from reconciler.sandbox.app import SandboxOptions, create_app

__all__ = ["SandboxOptions", "create_app", "embedded"]


def embedded(folder: Path) -> Any:
    """The app both built-in plugins name for `url: embedded`: one for both platforms,
    on `sandbox.db` in the `.reconciler` folder beside the manifests."""
    folder.mkdir(parents=True, exist_ok=True)
    return create_app(folder / "sandbox.db")
