"""Layer 3: the kdb Insights provider (packages, artifacts, deployments) over the Package
Manager v2 REST API.

Rule: imports `reconciler.providers.base`, `reconciler.providers.http`, `reconciler.diff`,
`reconciler.manifests`, `reconciler.schemas` and `reconciler.errors`; never another
platform's provider, never httpx. Modules: `artifact` (deterministic .kxi builds and
their cache), `auth` (Keycloak client credentials), `client` (one method per operation of
the contract), `policies` (what a change takes; pure), `provider` (observe and act).
"""
