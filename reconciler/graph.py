"""Layer 2: the dependency graph of resources. Pure: data in, data out.

Rule: imports only `reconciler.errors`, `reconciler.manifests` and libraries.

Edges run from a dependency to its dependent (a Repo to the Pipeline reading it), so a
topological order is a creation order and its reverse a deletion order. Edges come from
references found in specs (see `reconciler.manifests.kinds`) and from `dependsOn`.
A reference to nothing, a cycle, or a Repo named like a Pipeline of the same project is
an input error, reported at the spot in the manifest where it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx

from reconciler.errors import InputError, Problem
from reconciler.manifests import Resource, ResourceId, select_matches
from reconciler.manifests.reporting import Reporter
from reconciler.manifests.selection import check_selector


@dataclass(frozen=True)
class Graph:
    resources: dict[ResourceId, Resource]
    dag: nx.DiGraph[ResourceId]

    def order(self) -> list[ResourceId]:
        """Dependencies first; ties broken by id, so the order never varies."""
        return list(nx.lexicographical_topological_sort(self.dag, key=str))

    def dependencies(self, node: ResourceId) -> list[ResourceId]:
        return sorted(self.dag.predecessors(node), key=str)

    def dependents(self, node: ResourceId) -> list[ResourceId]:
        return sorted(self.dag.successors(node), key=str)

    def depth(self) -> int:
        """The number of resources on the longest dependency chain."""
        return int(nx.dag_longest_path_length(self.dag)) + 1 if self.dag else 0

    def select(
        self, selectors: Sequence[str], *, with_dependencies: bool = True
    ) -> set[ResourceId]:
        """Resources named by any selector, plus (by default) everything they depend on."""
        chosen = {
            rid
            for rid, res in self.resources.items()
            if any(select_matches(s, res) for s in selectors)
        }
        if with_dependencies:
            for rid in list(chosen):
                chosen |= nx.ancestors(self.dag, rid)
        return chosen


def check_selectors(selectors: Iterable[str], graph: Graph | None = None) -> None:
    """Malformed selectors, and (given the graph) selectors that name no resource, are
    input errors: a typo must not silently plan nothing."""
    problems = []
    for selector in selectors:
        reason = check_selector(selector)
        if reason:
            problems.append(Problem("--select", 0, 0, reason))
        elif graph is not None and not any(
            select_matches(selector, r) for r in graph.resources.values()
        ):
            problems.append(
                Problem(
                    "--select",
                    0,
                    0,
                    f"'{selector}' matches no resource",
                    "select by kind, id or id glob (<target>:<Kind>/<name glob>), or"
                    " field=glob terms (label.team=cv); `reconciler validate --format json`"
                    " lists every id",
                )
            )
    if problems:
        raise InputError(problems)


def build(resources: Iterable[Resource]) -> Graph:
    """The graph of `resources`; raises InputError for dangling references and cycles."""
    report = Reporter()
    by_id: dict[ResourceId, Resource] = {}
    for resource in resources:
        by_id.setdefault(resource.id, resource)
    dag: nx.DiGraph[ResourceId] = nx.DiGraph()
    dag.add_nodes_from(by_id)

    for resource in by_id.values():
        origin = resource.origin
        for reference in resource.references:
            target = reference.target or resource.target
            candidates = [ResourceId(target, kind, reference.name) for kind in reference.kinds]
            found = [rid for rid in candidates if rid in by_id]
            if resource.id in found:
                report.at(
                    origin.file,
                    origin.path,
                    origin.index,
                    reference.path,
                    f"{resource.id} depends on itself through this {reference.what}",
                    "a resource cannot depend on itself: remove or fix this reference",
                    fallback_line=origin.line,
                )
            elif found:
                for dependency in found:
                    dag.add_edge(dependency, resource.id)
            elif reference.required:
                kinds_text = " or ".join(reference.kinds)
                report.at(
                    origin.file,
                    origin.path,
                    origin.index,
                    reference.path,
                    f"{reference.what} '{reference.name}' names no {kinds_text} in the manifests"
                    f" (target '{target}')",
                    reference.hint or None,
                    fallback_line=origin.line,
                )

    if not report.problems and not nx.is_directed_acyclic_graph(dag):
        for component in nx.strongly_connected_components(dag):
            if len(component) < 2:
                continue
            members = sorted(component, key=str)
            cycle = [edge[0] for edge in nx.find_cycle(dag.subgraph(members), source=members[0])]
            cycle.append(cycle[0])
            first = by_id[cycle[0]]
            trail = " -> ".join(f"{rid} ({by_id[rid].origin})" for rid in cycle)
            report.at(
                first.origin.file,
                first.origin.path,
                first.origin.index,
                ("metadata", "name"),
                f"dependency cycle: {trail}",
                "break the cycle: remove a dependsOn entry or an input that closes it",
                fallback_line=first.origin.line,
            )
    if report.problems:
        raise InputError(report.problems)
    return Graph(by_id, dag)
