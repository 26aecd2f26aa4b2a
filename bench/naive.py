"""The naive CI script: every resource sent to the platform's update endpoint on every
push, as `for p in pipelines; do pachctl update pipeline -f $p; done` and
`kxi pm push --force && kxi pm deploy` loops do. Reconciler's own providers make the
calls, so both send the same requests; the difference is that this sends all of them.

    python bench/naive.py REPOSITORY
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from reconciler import compose
from reconciler.manifests import load
from reconciler.reconcile import Session
from reconciler.state import open_store


async def update_everything(folder: Path) -> dict[str, int]:
    manifests = load(folder)
    store = open_store(manifests.settings.state, manifests.root)
    counts = {"updated": 0, "created": 0}
    try:
        async with Session(manifests, compose.Connector(), store) as session:
            observations = await session.observe(*session.owned())
            desired = session.desire()
            for rid in session.graph.order():
                want = desired[rid]
                provider = session.providers[rid.target]
                observed = observations[rid.target].resources.get(rid)
                if observed is None:
                    await provider.create(want)
                    counts["created"] += 1
                elif rid.kind in ("Pipeline", "Deployment"):
                    # `pachctl update pipeline` with the same spec restarts its workers;
                    # `kxi pm deploy` of a deployed package restarts its components.
                    await provider.bounce(want, None)
                    counts["updated"] += 1
                else:
                    await provider.patch(want, observed, ())
                    counts["updated"] += 1
    finally:
        store.close()
    return counts


def main(folder: Path) -> int:
    print(json.dumps(asyncio.run(update_everything(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
