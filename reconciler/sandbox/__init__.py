"""Layer 8: emulators of both platforms' APIs, for the quickstart and for tests.

Rule: imports `reconciler.errors`, `reconciler.schemas` (data) and libraries (starlette,
jsonschema) only; never imported by layers 1-6. The command line (layer 7) runs it
in-process for `url: embedded` (through an ASGI transport) or over uvicorn for `sandbox
serve`. It is a test double for the platforms, not a platform: state lives in one SQLite
file.
"""

from reconciler.sandbox.app import SandboxOptions, create_app

__all__ = ["SandboxOptions", "create_app"]
