"""reconciler: a declarative GitOps reconciler for kdb Insights and Pachyderm.

Layers (DESIGN.md section 5), each importing only the ones before it, enforced by
import-linter (`make lint`):

0. `errors`: the one exception hierarchy.
1. `manifests`: files to typed resources.
2. `graph`, `diff`, `plan`: pure functions over data.
3. `providers`: the platform protocol and one subpackage per platform.
4. `state`: inventory, runs, locks.
5. `execute`: runs a plan.
6. `render`: text, markdown, JSON.
7. `cli`, `server`: the outside world.
8. `sandbox`: emulators of both platforms, never imported by layers 1-6.
"""

__version__ = "0.1.0"
