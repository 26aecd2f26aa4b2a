"""Golden plan cases: a manifests folder and a live state in, the expected plan out.

Each folder below `tests/data/plans/` holds:
- `manifests/`: the desired state (package folders may sit inside);
- `before/` (optional): manifests applied first, through the engine itself, to make the
  live state and the inventory as an earlier run would have left them;
- `live.yaml`: what else the fake targets hold and the inventory remembers:
    env:        variables for ${env:...}
    env_before: the same for `before/` (default: env)
    options:    {select, no_deps, prune, max_deletes, allow_mass_delete}
    drift:      {id: {field: value or null}}  changed on the target after `before/`
    vanish:     [id]                 deleted on the target outside reconciler
    unowned:    [id]                 dropped from the inventory (so: adopted)
    observed:   [{id, spec}]             more resources on the targets, normalised
    incomplete: {target: {Kind: why}}    kinds the targets could not list in full
    inventory:  [{id, spec?, secret_data?, fingerprints?, protect?, deletionPolicy?}]
                spec defaults to the observed one; secret_data: the clear data a
                Secret was last applied with (its digest is what is kept)
    apply:      {faults: {"<call> <id>": ["permanent: why" | "retryable: why"]}}
                when present, the plan is applied (one call at a time) and planned again
- `expected.json`: the plan (without digests and fingerprint) and, with `apply`, each
  action's result, the platform calls in order, and the summary of the next plan.

`UPDATE_GOLDEN=1 pytest tests/reconcile` rewrites the expected files; review the diff.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.diff import digest
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.execute import ExecuteOptions
from reconciler.manifests import LoadOptions, ResourceId, load
from reconciler.manifests.values import Sensitive
from reconciler.plan import PlanOptions, Source
from reconciler.reconcile import Session
from reconciler.state import InventoryEntry, SqliteStore
from tests.fake import FakeConnector, FakePlatform

CASES = Path(__file__).resolve().parents[1] / "data" / "plans"
TRIMMED = ("desired_digest", "observed_digest")


def read_live(case: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load((case / "live.yaml").read_text()) or {}
    assert isinstance(data, dict)
    return data


def _id(text: str) -> ResourceId:
    rid = ResourceId.parse(text)
    assert rid is not None, text
    return rid


def platforms(live: dict[str, Any]) -> dict[str, FakePlatform]:
    result: dict[str, FakePlatform] = {
        "insights": FakePlatform(),
        "pachyderm": FakePlatform(),
    }
    for item in live.get("observed", []):
        rid = _id(item["id"])
        result[rid.target].resources[rid] = dict(item.get("spec") or {})
    for target, kinds in (live.get("incomplete") or {}).items():
        result[target].incomplete = dict(kinds)
    for key, errors in ((live.get("apply") or {}).get("faults") or {}).items():
        call, rid_text = key.split(" ", 1)
        rid = _id(rid_text)
        result[rid.target].faults[(call, str(rid))] = [_error(e) for e in errors]
    return result


def _error(text: str) -> OperationalError:
    kind, _, why = text.partition(":")
    return RetryableError(why.strip()) if kind == "retryable" else PermanentError(why.strip())


def seed_inventory(store: SqliteStore, live: dict[str, Any]) -> None:
    observed = {item["id"]: item.get("spec") or {} for item in live.get("observed", [])}
    for item in live.get("inventory", []):
        rid = _id(item["id"])
        spec = item.get("spec", observed.get(item["id"], {}))
        fingerprints = dict(item.get("fingerprints") or {})
        if "secret_data" in item:
            data = {k: Sensitive("${env:?}", v) for k, v in item["secret_data"].items()}
            fingerprints["spec.data"] = digest(data)
        store.record_applied(
            InventoryEntry(
                id=str(rid),
                target=rid.target,
                kind=rid.kind,
                digest=digest(spec),
                revision=None,
                adopted=False,
                spec=spec,
                fingerprints=fingerprints,
                protect=bool(item.get("protect", False)),
                deletion_policy=item.get("deletionPolicy", "Delete"),
            )
        )


def adjust(live: dict[str, Any], targets: dict[str, FakePlatform], store: SqliteStore) -> None:
    for text, fields in (live.get("drift") or {}).items():
        rid = _id(text)
        spec = targets[rid.target].resources[rid]
        for key, value in fields.items():
            if value is None:
                spec.pop(key, None)
            else:
                spec[key] = value
    for text in live.get("vanish") or ():
        rid = _id(text)
        del targets[rid.target].resources[rid]
    for text in live.get("unowned") or ():
        store.forget(text)
    for platform in targets.values():
        platform.calls.clear()
        platform.restarts.clear()
        platform.bounced.clear()


def trim(plan: dict[str, Any]) -> dict[str, Any]:
    plan = {k: v for k, v in plan.items() if k not in ("fingerprint", "source", "state")}
    plan["actions"] = [{k: v for k, v in a.items() if k not in TRIMMED} for a in plan["actions"]]
    return plan


def run_case(case: Path, tmp: Path) -> dict[str, Any]:
    live = read_live(case)
    env = {str(k): str(v) for k, v in (live.get("env") or {}).items()}
    manifests = load(case / "manifests", LoadOptions(env=env))
    options = live.get("options") or {}
    plan_options = PlanOptions(
        select=tuple(options.get("select", ())),
        with_dependencies=not options.get("no_deps", False),
        prune=bool(options.get("prune", False)),
        max_deletes=int(options.get("max_deletes", 10)),
        allow_mass_delete=bool(options.get("allow_mass_delete", False)),
    )
    connector = FakeConnector(platforms(live))
    store = SqliteStore(tmp / "state.db")
    seed_inventory(store, live)

    async def scenario() -> dict[str, Any]:
        if (case / "before").is_dir():
            before_env = {str(k): str(v) for k, v in (live.get("env_before") or env).items()}
            earlier = load(case / "before", LoadOptions(env=before_env))
            async with Session(earlier, connector, store) as session:
                planned = await session.plan(PlanOptions(), Source("before"))
                outcome = await session.apply(planned, ExecuteOptions(concurrency=1))
                assert outcome.ok, outcome
            adjust(live, connector.platforms, store)
        async with Session(manifests, connector, store) as session:
            planned = await session.plan(plan_options, Source("manifests"))
            result: dict[str, Any] = {"plan": trim(planned.plan.to_json())}
            if "apply" not in live:
                return result
            outcome = await session.apply(
                planned, ExecuteOptions(concurrency=1, backoff_initial=0, backoff_max=0)
            )
            result["apply"] = {
                "result": outcome.result,
                "actions": [
                    {k: v for k, v in r.to_json().items() if k != "duration"}
                    for r in outcome.results
                ],
                "calls": [
                    f"{call} {rid}"
                    for platform in connector.platforms.values()
                    for call, rid in platform.calls
                ],
            }
            again = await session.plan(plan_options, Source("manifests"))
            result["next_plan"] = again.plan.summary()
            return result

    try:
        return asyncio.run(scenario())
    finally:
        store.close()


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
