"""An apply as it runs: a progress bar on a terminal, one line per action otherwise,
and the summary at the end."""

from __future__ import annotations

import json
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reconciler.execute import ActionResult, Outcome
from reconciler.plan import Action
from reconciler.render.console import console_text

STATUS_STYLE = {"ok": "green", "failed": "red", "skipped": "yellow", "not started": "yellow"}


def result_line(result: ActionResult) -> str:
    style = STATUS_STYLE[result.status]
    calls = (
        f" [dim]({', '.join(result.calls)}; {result.duration:.1f}s)[/dim]" if result.calls else ""
    )
    message = f": {console_text(result.message)}" if result.message else ""
    return (
        f"[{style}]{result.status:<11}[/{style}] {result.action:<8} {console_text(str(result.id))}"
        f"{calls}{message}"
    )


class Lines:
    """One line per finished action: for logs and CI, where there is no terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __enter__(self) -> Lines:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def started(self, action: Action) -> None:
        pass

    def finished(self, result: ActionResult) -> None:
        self.console.print(result_line(result))


class Bar(Lines):
    """A progress bar, with failures printed above it as they happen."""

    def __init__(self, console: Console, total: int) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]applying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> Bar:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def started(self, action: Action) -> None:
        self.progress.update(self.task, description=console_text(str(action.id)))

    def finished(self, result: ActionResult) -> None:
        self.progress.advance(self.task)
        self.progress.console.print(result_line(result))


def summary(outcome: Outcome) -> str:
    counts = outcome.counts()
    parts = [f"{counts['ok']} done"]
    parts += [f"{n} {status}" for status, n in counts.items() if status != "ok" and n]
    text = f"{', '.join(parts)} in {outcome.duration:.1f}s (run {outcome.run_id})"
    if outcome.result == "succeeded":
        return f"[green]Apply complete[/green]: {text}."
    if outcome.result == "interrupted":
        return (
            f"[yellow]Apply interrupted[/yellow]: {text}. Calls in flight were let finish;"
            " run apply again to carry on."
        )
    return f"[red]Apply {outcome.result}[/red]: {text}. Fix the failures and apply again."


def outcome_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "run_id": outcome.run_id,
            "result": outcome.result,
            "duration": round(outcome.duration, 3),
            "counts": outcome.counts(),
            "results": [r.to_json() for r in outcome.results],
        },
        indent=2,
    )
