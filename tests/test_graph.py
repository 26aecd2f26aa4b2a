"""The dependency graph: creation order, selection, drawings."""

from __future__ import annotations

from pathlib import Path

from reconciler.graph import Graph, build
from reconciler.manifests import LoadOptions, ResourceId, load
from reconciler.render.graph import as_dot, as_mermaid
from tests.conftest import EXAMPLES

QUICKSTART = EXAMPLES / "quickstart"


def _graph() -> Graph:
    return build(load(QUICKSTART, LoadOptions(env={})).resources)


def test_dependencies_come_first() -> None:
    order = [str(n) for n in _graph().order()]
    assert order.index("pachyderm:Project/vision") < order.index("pachyderm:Repo/vision/images")
    assert order.index("pachyderm:Repo/vision/images") < order.index(
        "pachyderm:Pipeline/vision/edges"
    )
    assert order.index("pachyderm:Pipeline/vision/edges") < order.index(
        "pachyderm:Pipeline/vision/montage"
    )
    assert order.index("pachyderm:Pipeline/vision/montage") < order.index(
        "pachyderm:Pipeline/vision/summary"
    )
    assert order.index("insights:Package/trades") < order.index("insights:Deployment/trades")


def test_order_is_deterministic_whatever_the_file_order(tmp_path: Path) -> None:
    docs = (QUICKSTART / "manifests" / "pachyderm.yaml").read_text().split("\n---\n")
    (tmp_path / "a.yaml").write_text("\n---\n".join(reversed(docs)))
    reversed_order = build(load(tmp_path).resources).order()
    pachyderm = [n for n in _graph().order() if n.target == "pachyderm"]
    assert reversed_order == pachyderm


def test_select_pulls_in_dependencies() -> None:
    graph = _graph()
    chosen = graph.select(["pachyderm:Pipeline/vision/montage"])
    assert {str(n) for n in chosen} == {
        "pachyderm:Pipeline/vision/montage",
        "pachyderm:Pipeline/vision/edges",
        "pachyderm:Repo/vision/images",
        "pachyderm:Repo/vision/labels",
        "pachyderm:Project/vision",
    }
    alone = graph.select(["pachyderm:Pipeline/vision/montage"], with_dependencies=False)
    assert {str(n) for n in alone} == {"pachyderm:Pipeline/vision/montage"}
    assert {
        str(n) for n in graph.select(["kind=Pipeline,label.team=cv"], with_dependencies=False)
    } == {
        "pachyderm:Pipeline/vision/edges",
        "pachyderm:Pipeline/vision/montage",
        "pachyderm:Pipeline/vision/summary",
    }
    assert {str(n) for n in graph.select(["Deployment/*"], with_dependencies=False)} == {
        "insights:Deployment/trades"
    }


def test_depends_on_adds_an_edge(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {name: a}\n---\n"
        "apiVersion: pachyderm/v1\nkind: Repo\nmetadata:\n  name: b\n  dependsOn: [Repo/a]\n---\n"
        "apiVersion: insights/v1\nkind: Package\nmetadata:\n  name: p\n"
        "  dependsOn: ['pachyderm:Repo/default/b']\nspec: {version: 1.0.0, artifact: p.kxi}\n"
    )
    (tmp_path / "p.kxi").write_bytes(b"PK")
    graph = build(load(tmp_path).resources)
    assert graph.dependencies(ResourceId("pachyderm", "Repo", "default/b")) == [
        ResourceId("pachyderm", "Repo", "default/a")
    ]
    assert graph.dependencies(ResourceId("insights", "Package", "p")) == [
        ResourceId("pachyderm", "Repo", "default/b")
    ]


def test_secret_mounts_are_edges_when_defined(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: db}\nspec: {data: {k: v}}\n---\n"
        "apiVersion: pachyderm/v1\nkind: Pipeline\nmetadata: {name: q}\nspec:\n"
        "  transform: {image: busybox, secrets: [{name: db, mountPath: /s}, {name: elsewhere}]}\n"
        "  input: {cron: {name: tick, spec: '@every 1m'}}\n"
    )
    graph = build(load(tmp_path).resources)
    assert graph.dependencies(ResourceId("pachyderm", "Pipeline", "default/q")) == [
        ResourceId("pachyderm", "Secret", "db")
    ]


def test_drawings_name_every_node_and_edge() -> None:
    graph = _graph()
    dot = as_dot(graph)
    assert '"pachyderm:Repo/vision/images" -> "pachyderm:Pipeline/vision/edges";' in dot
    mermaid = as_mermaid(graph)
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->") == graph.dag.number_of_edges()
