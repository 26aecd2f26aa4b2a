"""Layer 3: the kdb Insights provider (packages, artifacts, deployments) over the Package
Manager v2 REST API, as a plugin.

Rule: imports `reconciler.providers.base`, `.plugin`, `.http`, `reconciler.diff`,
`reconciler.manifests`, `reconciler.schemas` and `reconciler.errors`; never another
platform's provider, never httpx. Modules: `plugin` (what reconciler registers: kinds,
target, policies, connect), `kinds` and `target` (the manifests' and reconciler.yaml's
models), `package_source` and `package_files` (a Package's folder, checked at load),
`artifact` (.kxi builds, the content digest, the Package object, their cache),
`assembly` (legacy assemblies to package folders), `auth` (Keycloak client
credentials), `client` (one method per operation of the contract), `contract` (the
contract compared with an instance's description), `connection` (a target to its
provider), `policies` (what a change takes; pure), `provider` (observe and act).
"""
