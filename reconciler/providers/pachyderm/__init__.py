"""Layer 3: the Pachyderm provider (projects, repos, secrets, defaults, pipelines) over
pachd's REST gateway, as a plugin.

Rule: imports `reconciler.providers.base`, `.plugin`, `.http`, `reconciler.diff`,
`reconciler.manifests`, `reconciler.schemas` and `reconciler.errors`; never another
platform's provider, never httpx. Modules: `plugin` (what reconciler registers: kinds,
target, policies, connect), `kinds` and `target` (the manifests' and reconciler.yaml's
models), `pipeline_rules` and `cron` (what pachd would refuse, found at load),
`client` (one method per RPC), `canonical` (one canonical form for both sides),
`defaults` (cluster and project defaults, merged as pachd merges them), `connection` (a
target to its provider), `policies` (what a change takes; pure), `provider` (observe
and the actions).
"""
