"""Plans for people: the terminal (rich) and a pull-request comment (markdown).

Values in changes are already safe (sensitive ones are `(sensitive)` in every Change);
this module only lays them out.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from reconciler.diff import Change, dotted
from reconciler.manifest_changes import ResourceChange, Review
from reconciler.plan import Action, Plan
from reconciler.render.console import console_text

MARKDOWN_LIMIT = 65_000

SYMBOL = {
    "create": "+",
    "patch": "~",
    "bounce": "↻",
    "replace": "-/+",
    "delete": "-",
    "noop": "=",
}
STYLE = {
    "create": "green",
    "patch": "yellow",
    "bounce": "cyan",
    "replace": "magenta",
    "delete": "red",
    "noop": "dim",
}
VERB = {
    "create": "to create",
    "patch": "to patch",
    "bounce": "to bounce",
    "replace": "to replace",
    "delete": "to delete",
}


def value(item: Any, limit: int = 120) -> str:
    text = item if isinstance(item, str) and item == "(sensitive)" else json.dumps(item)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def change_line(change: Change) -> str:
    if change.op == "add":
        return f"+ {dotted(change.path)}: {value(change.new)}"
    if change.op == "remove":
        return f"- {dotted(change.path)}: {value(change.old)}"
    return f"~ {dotted(change.path)}: {value(change.old)} → {value(change.new)}"


def headline(plan: Plan) -> str:
    summary = plan.summary()
    parts = [f"{summary[a]} {verb}" for a, verb in VERB.items() if summary[a]]
    adopt = sum(1 for a in plan.actions if a.adopt)
    if adopt:
        parts.append(f"{adopt} to adopt")
    if plan.forget:
        parts.append(f"{len(plan.forget)} to forget")
    if not parts:
        return "No changes. The targets match the manifests."
    return f"Plan: {', '.join(parts)}; {summary['noop']} unchanged."


def _detail(action: Action) -> list[str]:
    lines = []
    if action.bounce is not None:
        lines.append(f"bounce: {action.bounce.shown}")
    if action.action == "replace":
        order = (
            "delete, then create"
            if action.delete_before_replace
            else "create the new one; delete the old one once its dependents moved on"
        )
        lines.append(f"order: {order}")
    if action.depends_on:
        lines.append("after: " + ", ".join(str(d) for d in action.depends_on))
    return lines


def print_text(plan: Plan, console: Console, *, verbose: bool = False) -> None:
    """Grouped by target, in execution order; noops only when verbose."""
    targets = sorted({a.id.target for a in plan.actions} | {f.id.target for f in plan.forget})
    for target in targets:
        shown = [
            a for a in plan.actions if a.id.target == target and (verbose or a.mutates or a.adopt)
        ]
        forgets = [f for f in plan.forget if f.id.target == target]
        if not shown and not forgets:
            continue
        console.print(f"[bold]{console_text(target)}[/bold]")
        for action in shown:
            style = STYLE[action.action]
            adopt = " [blue](adopt)[/blue]" if action.adopt else ""
            console.print(
                f"  [{style}]{SYMBOL[action.action]:>3} {action.action:<8}[/{style}]"
                f" {console_text(str(action.id))}{adopt}"
            )
            for reason in action.reasons:
                console.print(f"        [dim]{console_text(reason)}[/dim]")
            if action.mutates or verbose:
                for change in action.changes:
                    console.print(f"          {console_text(change_line(change))}", style=style)
            for line in _detail(action):
                console.print(f"        [dim]{console_text(line)}[/dim]")
        for forget in forgets:
            console.print(f"  [blue]  ∅ forget  [/blue] {console_text(str(forget.id))}")
            console.print(f"        [dim]{console_text(forget.reason)}[/dim]")
        console.print()
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {console_text(str(warning))}")
    for error in plan.errors:
        console.print(f"[red]error:[/red] {console_text(str(error))}")
    if plan.warnings or plan.errors:
        console.print()
    console.print(f"[bold]{console_text(headline(plan))}[/bold]")
    if plan.errors:
        count = len(plan.errors)
        console.print(f"[red]This plan cannot be applied: {count} error{'s' * (count != 1)}.[/red]")


COMMENT_MARKER = "<!-- reconciler-plan -->"
"""First line of every comment body: CI finds the comment it wrote by it, and updates it."""

REVIEW_SYMBOL = {"added": "+", "changed": "~", "removed": "-"}
REVIEW_STYLE = {"added": "green", "changed": "yellow", "removed": "red"}


def print_review(review: Review, console: Console) -> None:
    """What the manifests changed since the base, resource by resource."""
    since = f"{review.base_ref}" + (
        f" ({review.base_revision[:12]})" if review.base_revision else ""
    )
    console.print(f"[bold]Manifest changes since {console_text(since)}[/bold]")
    if review.base_error is not None:
        console.print(f"  [yellow]{console_text(review.base_error)}[/yellow]")
    elif not review.resources:
        console.print("  [dim]none: the desired state is the same[/dim]")
    for item in review.resources:
        style = REVIEW_STYLE[item.change]
        console.print(
            f"  [{style}]{REVIEW_SYMBOL[item.change]} {item.change:<8}[/{style}]"
            f" {console_text(str(item.id))}"
        )
        for change in item.changes:
            console.print(f"          {console_text(change_line(change))}", style=style)
    console.print()
    console.print("[bold]Live plan for the head[/bold]")


def markdown(plan: Plan, review: Review | None = None, *, limit: int = MARKDOWN_LIMIT) -> str:
    """One pull-request comment: what the manifests change (with `review`), then the live
    plan as a summary table and a collapsible diff per resource; never longer than `limit`
    characters (a note says what was cut)."""
    summary = plan.summary()
    source = plan.source
    about = [f"`{source.path}`"]
    if source.profile:
        about.append(f"profile `{source.profile}`")
    if source.revision:
        about.append(f"revision `{source.revision[:12]}`")
    head = [COMMENT_MARKER, "### reconciler plan", ""]
    sections: list[str] = []
    if review is not None:
        counts = review.counts()
        since = f"`{review.base_ref}`" + (
            f" (`{review.base_revision[:12]}`)" if review.base_revision else ""
        )
        if review.base_error is not None:
            said = f":warning: {_md(review.base_error)}"
        elif review.resources:
            said = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        else:
            said = "none: the desired state is the same"
        head += [f"**Manifest changes since {since}**: {said}", ""]
        if review.resources:
            sections.append("\n#### Manifest changes\n\n")
            sections += [_md_review(item) for item in review.resources]
        sections.append("\n#### Live plan\n\n")
    head += [
        f"**{headline(plan)}** ({', '.join(about)})",
        "",
        "| action | count |",
        "|---|---:|",
        *(f"| {a} | {summary[a]} |" for a in summary),
        "",
    ]
    tail: list[str] = []
    if plan.errors:
        tail += ["**Errors: this plan cannot be applied**", ""]
        tail += [f"- :x: {_md(str(e))}" for e in plan.errors] + [""]
    if plan.warnings:
        tail += ["**Warnings**", ""]
        tail += [f"- :warning: {_md(str(w))}" for w in plan.warnings] + [""]
    tail += [f"<sub>plan fingerprint `{plan.fingerprint}`</sub>"]

    sections += [_md_section(a) for a in plan.actions if a.mutates or a.adopt]
    sections += [f"- `∅ forget` `{f.id}`: {_md(f.reason)}\n" for f in plan.forget]
    text = "\n".join(head)
    closing = "\n" + "\n".join(tail) + "\n"
    budget = limit - len(text) - len(closing) - 300
    body: list[str] = []
    used = 0
    for index, section in enumerate(sections):
        if used + len(section) > budget:
            left = len(sections) - index
            body.append(
                f"\n> :scissors: {left} more section{'s' * (left != 1)} not shown: a comment"
                f" holds at most {limit:,} characters. Run `reconciler plan` for the whole plan.\n"
            )
            break
        body.append(section)
        used += len(section)
    return text + "".join(body) + closing


def _md_review(item: ResourceChange) -> str:
    lines = [
        "<details>",
        f"<summary><code>{REVIEW_SYMBOL[item.change]} {item.change}</code>"
        f" <code>{item.id}</code></summary>",
        "",
    ]
    if item.changes:
        lines += ["```diff", *(_fence_safe(change_line(c)) for c in item.changes), "```"]
    lines += ["</details>", ""]
    return "\n".join(lines) + "\n"


def _md_section(action: Action) -> str:
    adopt = " (adopt)" if action.adopt else ""
    reasons = "; ".join(action.reasons)
    lines = [
        "<details>",
        f"<summary><code>{SYMBOL[action.action]} {action.action}</code> <code>{action.id}</code>"
        f"{adopt}: {_html(reasons)}</summary>",
        "",
    ]
    diff_lines = [change_line(c) for c in action.changes] + [f"# {d}" for d in _detail(action)]
    if diff_lines:
        lines += ["```diff", *(_fence_safe(line) for line in diff_lines), "```"]
    lines += ["</details>", ""]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fence_safe(line: str) -> str:
    return line.replace("```", "`\u200b``")
