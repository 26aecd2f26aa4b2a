"""The dependency graph as text, Graphviz dot, or Mermaid."""

from __future__ import annotations

from reconciler.graph import Graph
from reconciler.manifests import ResourceId


def as_text(graph: Graph) -> str:
    """Creation order, one resource a line, with what each waits for."""
    lines = []
    for step, node in enumerate(graph.order(), start=1):
        resource = graph.resources[node]
        needs = graph.dependencies(node)
        after = f"  <- {', '.join(map(str, needs))}" if needs else ""
        lines.append(f"{step:>4}. {node}  ({resource.origin}){after}")
    return "\n".join(lines)


def as_dot(graph: Graph) -> str:
    lines = ["digraph reconciler {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for node in graph.order():
        lines.append(f'  "{node}" [label="{node.kind}\\n{node.name}", tooltip="{node}"];')
    for source, target in sorted(graph.dag.edges, key=lambda e: (str(e[0]), str(e[1]))):
        lines.append(f'  "{source}" -> "{target}";')
    lines.append("}")
    return "\n".join(lines)


def as_mermaid(graph: Graph) -> str:
    order = graph.order()
    names = {node: f"n{index}" for index, node in enumerate(order)}
    lines = ["flowchart LR"]
    for node in order:
        lines.append(f'  {names[node]}["{_mermaid_label(node)}"]')
    for source, target in sorted(graph.dag.edges, key=lambda e: (str(e[0]), str(e[1]))):
        lines.append(f"  {names[source]} --> {names[target]}")
    return "\n".join(lines)


def _mermaid_label(node: ResourceId) -> str:
    return f"{node.target}:{node.kind}<br/>{node.name}".replace('"', "'")
