"""Layer 3: the Pachyderm provider (projects, repos, secrets, pipelines) over pachd's
REST gateway.

Rule: imports `reconciler.providers.base`, `reconciler.providers.http`, `reconciler.diff`,
`reconciler.manifests` and `reconciler.errors`; never another platform's provider, never
httpx. Modules: `client` (one method per RPC), `normal` (one canonical form for both
sides), `policies` (what a change takes; pure), `provider` (observe and the actions).
"""
