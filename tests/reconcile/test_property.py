"""Property: from any earlier state, apply then plan is empty, and the targets hold the
desired state; resources the reconciler does not own are never touched."""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.execute import ExecuteOptions
from reconciler.manifests import LoadOptions, ResourceId, load
from reconciler.plan import PlanOptions, Source
from reconciler.reconcile import Session
from reconciler.state import SqliteStore
from tests.fake import FakeConnector

PRUNE = PlanOptions(prune=True, max_deletes=1000, allow_mass_delete=True)
FAST = ExecuteOptions(concurrency=4, backoff_initial=0, backoff_max=0)


@dataclass(frozen=True)
class World:
    """A manifests folder's content: documents, package files and variables."""

    documents: tuple[dict[str, Any], ...]
    package_file: str
    env: tuple[tuple[str, str], ...]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / "all.yaml").write_text("---\n".join(json.dumps(d) + "\n" for d in self.documents))
        if not any(d["kind"] == "Package" for d in self.documents):
            return folder  # an unreferenced package folder would be read as manifests
        package = folder / "pkg"
        (package / "pipelines").mkdir(parents=True)
        (package / "manifest.yaml").write_text("name: pk\nversion: 1.0.0\n")
        (package / "pipelines" / "rt.yaml").write_text(self.package_file)
        return folder


def _doc(api: str, kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


@st.composite
def worlds(draw: st.DrawFn) -> World:
    texts = st.sampled_from(["a", "b"])
    pipelines: dict[str, dict[str, Any]] = {}
    names = ["r0", "r1", "r2"]
    chosen_repos = {n for n in names if draw(st.booleans())}
    for index in range(4):
        source = draw(st.sampled_from([*names, *(f"q{j}" for j in range(index))]))
        transform: dict[str, Any] = {"image": draw(st.sampled_from(["img:1", "img:2"]))}
        if draw(st.booleans()):
            transform["secrets"] = [{"name": "s0", "key": "k", "envVar": "K"}]
        pipelines[f"q{index}"] = {
            "input": {"pfs": {"repo": source, "glob": "/*"}},
            "transform": transform,
        }
    wanted = {f"q{i}" for i in range(4) if draw(st.booleans())}
    # Close over inputs: a chosen pipeline brings what it reads (inputs come earlier).
    for name in sorted(wanted | {f"q{i}" for i in range(4)}, reverse=True):
        if name in wanted:
            repo = pipelines[name]["input"]["pfs"]["repo"]
            (wanted if repo.startswith("q") else chosen_repos).add(repo)
    documents = [_doc("pachyderm/v1", "Project", "p", {"description": draw(texts)})]
    documents += [
        _doc("pachyderm/v1", "Repo", name, {"description": draw(texts)}, project="p")
        for name in sorted(chosen_repos)
    ]
    documents += [
        _doc("pachyderm/v1", "Pipeline", name, pipelines[name], project="p")
        for name in sorted(wanted)
    ]
    mounts = any("secrets" in pipelines[n]["transform"] for n in wanted)
    if mounts or draw(st.booleans()):
        documents.append(_doc("pachyderm/v1", "Secret", "s0", {"data": {"k": "${env:S0}"}}))
    if draw(st.booleans()):
        documents.append(
            _doc("insights/v1", "Package", "pk", {"version": "1.0.0", "source": "pkg"})
        )
        if draw(st.booleans()):
            env = {"rt": {"LOG": draw(texts)}}
            documents.append(_doc("insights/v1", "Deployment", "d", {"package": "pk", "env": env}))
    return World(tuple(documents), draw(texts), (("S0", draw(texts)),))


@dataclass(frozen=True)
class Meddling:
    """What happens to the targets between two runs, outside the reconciler."""

    drift: bool
    vanish: bool
    disown: bool


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    before=worlds(),
    after=worlds(),
    meddling=st.builds(Meddling, st.booleans(), st.booleans(), st.booleans()),
)
def test_apply_then_plan_is_empty(before: World, after: World, meddling: Meddling) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = load(before.write(root / "before"), LoadOptions(env=dict(before.env)))
        second = load(after.write(root / "after"), LoadOptions(env=dict(after.env)))
        connector = FakeConnector()
        store = SqliteStore(root / "state.db")

        async def scenario() -> None:
            async with Session(first, connector, store) as session:
                planned = await session.plan(PlanOptions(), Source("before"))
                assert (await session.apply(planned, FAST)).ok

            pach = connector.platforms["pachyderm"]
            desired_ids = {r.id for r in second.resources}
            leaves = sorted(
                (rid for rid in pach.resources if rid.kind == "Pipeline"),
                key=str,
            )
            unowned: set[ResourceId] = set()
            if meddling.drift:
                for rid in leaves[:1]:
                    pach.resources[rid]["datumTries"] = 9
            if meddling.vanish and leaves:
                del pach.resources[leaves[-1]]
            if meddling.disown:
                # An unowned resource in the new manifests is adopted; one outside them
                # must survive. Disown only what nothing reads from and whose input stays
                # (else deleting that input would rightly fail: it is in use).
                read = {
                    spec["input"]["pfs"]["repo"]
                    for spec in (pach.resources[rid] for rid in leaves if rid in pach.resources)
                }
                wanted_names = {rid.name.split("/")[-1] for rid in desired_ids}
                for rid in leaves:
                    spec = pach.resources.get(rid)
                    if (
                        spec is not None
                        and rid.name.split("/")[1] not in read
                        and (rid in desired_ids or spec["input"]["pfs"]["repo"] in wanted_names)
                    ):
                        store.forget(str(rid))
                        unowned.add(rid)
            kept = {rid: dict(pach.resources[rid]) for rid in unowned if rid not in desired_ids}

            async with Session(second, connector, store) as session:
                planned = await session.plan(PRUNE, Source("after"))
                assert not planned.plan.errors, planned.plan.errors
                outcome = await session.apply(planned, FAST)
                assert outcome.ok, [r for r in outcome.results if r.status != "ok"]
                again = await session.plan(PRUNE, Source("after"))
                assert not again.plan.pending, again.plan.to_json()
                desired = session.desire()

            # The targets hold exactly what was asked, plus what was never ours.
            held = {
                rid: spec
                for platform in connector.platforms.values()
                for rid, spec in platform.resources.items()
            }
            for rid, want in desired.items():
                assert rid in held
                shown = {k: v for k, v in held[rid].items() if k != "data"}
                expected = {k: v for k, v in want.spec.items() if k != "data"}
                assert json.loads(json.dumps(shown)) == json.loads(
                    json.dumps(expected, default=str)
                )
            assert set(held) - set(desired) == set(kept)
            for rid, spec in kept.items():
                assert held[rid] == spec

        try:
            asyncio.run(scenario())
        finally:
            store.close()
