"""The dependency graph drawn as SVG on the server: no script, no external asset.

Resources are laid out in columns by depth (what a resource uses stands to its left),
boxes coloured by health and outlined by sync, each a link to its page; edges run from
a dependency to its dependent. Text is escaped: names come from manifests and platforms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import quote

from reconciler.manifests import ResourceId
from reconciler.resource_status import ResourceStatus

WIDTH, HEIGHT, GAP_X, GAP_Y, MARGIN = 220, 40, 50, 12, 16
FILL = {"healthy": "#e7f5ea", "progressing": "#e6f0fb", "degraded": "#fbe7e7", "unknown": "#eeeeee"}
STROKE = {
    "synced": "#3a7d44",
    "out_of_sync": "#c77700",
    "missing": "#b00020",
    "not_managed": "#888888",
}
MAX_NODES = 400
"""Beyond this a graph is unreadable: the page asks for one resource's neighbourhood."""


def depths(
    nodes: Sequence[ResourceId], uses: Mapping[ResourceId, Sequence[ResourceId]]
) -> dict[ResourceId, int]:
    """Each node's column: one more than the deepest thing it uses among `nodes`."""
    inside = set(nodes)
    found: dict[ResourceId, int] = {}

    def depth(rid: ResourceId, trail: frozenset[ResourceId]) -> int:
        if rid not in found:
            before = [u for u in uses.get(rid, ()) if u in inside and u not in trail]
            found[rid] = 1 + max((depth(u, trail | {rid}) for u in before), default=-1)
        return found[rid]

    for rid in nodes:
        depth(rid, frozenset())
    return found


def render(
    statuses: Sequence[ResourceStatus], focus: ResourceId | None = None, root: str = ""
) -> str:
    """An SVG document of `statuses` and the edges among them."""
    by_id = {s.id: s for s in statuses}
    uses = {s.id: [u for u in s.uses if u in by_id] for s in statuses}
    column = depths(list(by_id), uses)
    columns: dict[int, list[ResourceId]] = {}
    for rid in sorted(by_id, key=str):
        columns.setdefault(column[rid], []).append(rid)
    place: dict[ResourceId, tuple[int, int]] = {}
    for index, rids in columns.items():
        for row, rid in enumerate(rids):
            place[rid] = (
                MARGIN + index * (WIDTH + GAP_X),
                MARGIN + row * (HEIGHT + GAP_Y),
            )
    width = MARGIN * 2 + (max(columns, default=0) + 1) * (WIDTH + GAP_X) - GAP_X
    tallest = max((len(r) for r in columns.values()), default=1)
    height = MARGIN * 2 + tallest * (HEIGHT + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        ' aria-label="dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"'
        ' fill="#777"/></marker></defs>',
    ]
    for rid, used in uses.items():
        x2, y2 = place[rid]
        for dependency in used:
            x1, y1 = place[dependency]
            start_x, start_y = x1 + WIDTH, y1 + HEIGHT / 2
            end_y = y2 + HEIGHT / 2
            bend = (x2 - start_x) / 2
            parts.append(
                f'<path d="M {start_x} {start_y} C {start_x + bend} {start_y},'
                f' {x2 - bend} {end_y}, {x2} {end_y}" fill="none" stroke="#999"'
                ' marker-end="url(#arrow)"/>'
            )
    for rid, (x, y) in place.items():
        status = by_id[rid]
        dashed = ' stroke-dasharray="5 3"' if status.sync in ("missing", "not_managed") else ""
        thick = 3 if rid == focus else 1.5
        title = f"{rid}: {status.sync.replace('_', ' ')}, {status.health.state}"
        if status.health.reason:
            title += f" ({status.health.reason})"
        label = f"{rid.kind}/{rid.name}"
        if len(label) > 34:
            label = label[:33] + "…"
        parts.append(
            f'<a href="{escape(root)}/resources/{quote(str(rid), safe="")}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{x}" y="{y}" width="{WIDTH}" height="{HEIGHT}" rx="6"'
            f' fill="{FILL[status.health.state]}" stroke="{STROKE[status.sync]}"'
            f' stroke-width="{thick}"{dashed}/>'
            f'<text x="{x + 10}" y="{y + 17}" font-size="12" font-family="sans-serif">'
            f"{escape(label)}</text>"
            f'<text x="{x + 10}" y="{y + 32}" font-size="10" font-family="sans-serif"'
            f' fill="#555">{escape(status.sync.replace("_", " "))} · '
            f"{escape(status.health.state)}</text></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def neighbourhood(
    statuses: Mapping[ResourceId, ResourceStatus], centre: ResourceId, hops: int = 2
) -> list[ResourceStatus]:
    """`centre` and what lies within `hops` of it, up and down."""
    seen = {centre}
    frontier = {centre}
    for _ in range(hops):
        following: set[ResourceId] = set()
        for rid in frontier:
            status = statuses.get(rid)
            if status is not None:
                following.update(status.uses)
                following.update(status.used_by)
        frontier = {r for r in following if r in statuses} - seen
        seen |= frontier
    return [statuses[r] for r in sorted(seen, key=str) if r in statuses]
