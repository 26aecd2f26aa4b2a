"""reconciler: a declarative GitOps reconciler for kdb Insights and Pachyderm.

Layers (DESIGN.md section 5), each importing only the ones below it, enforced by
import-linter (`make lint`; tests/test_layers.py checks each docstring's number):

0. `errors`, `redact`, `retry`, `schemas`: the exception tree, masking, backoff, data.
1. `manifests`: files to typed resources, through the catalog of installed plugins.
2. `diff`, `graph`, `providers.http`, `providers.base`, `plan`, `manifest_changes`:
   pure functions over data, the provider protocol, and the one HTTP client.
3. `providers.plugin` and the platform providers, each a plugin.
4. `state`: inventory, runs, locks.
5. `execute`, `reconcile`: run a plan; the one reconcile use case.
6. `render`: text, markdown, JSON.
7. `sandbox`, `compose` (the composition root), `checkout`, `server`.
8. `cli`: the command line.
"""

__version__ = "0.1.0"
