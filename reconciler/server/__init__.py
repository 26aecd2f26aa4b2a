"""Layer 7: `reconciler serve`, the long-running reconciler: webhooks, a schedule, metrics.

Rule: the outside world, like `reconciler.cli` and never importing it; one run at a time
for the whole process (so never two on one target), triggers coalesced while a run is in
flight; everything it says goes to structured JSON logs, never to a terminal.

    app.py       the Starlette routes: /hooks/{github,gitlab,generic}, /healthz, /readyz,
                 /metrics, /status; the lifespan that starts and drains the worker
    hooks.py     webhook authentication (constant time), body limit, replayed deliveries
    schedule.py  the worker: a pending trigger, the jittered interval, an injectable clock
    runs.py      one run: fetch the source, load, plan, and apply in apply mode
    metrics.py   Prometheus metrics of one server (its own registry, no globals)
    logs.py      JSON log lines
"""

from reconciler.server.app import create_app
from reconciler.server.runs import Mode, ServeOptions

__all__ = ["Mode", "ServeOptions", "create_app"]
