"""What every command shares: the consoles, the common arguments, loading manifests,
the providers' connector, and asking for confirmation."""

from __future__ import annotations

import gc
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reconciler import checkout, compose
from reconciler.checkout import Checkout, Origin
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.manifests import LoadOptions, Manifests, load
from reconciler.manifests.config import Settings
from reconciler.providers.http import KeptConnections
from reconciler.reconcile import Connector
from reconciler.redact import masked

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PathArg = Annotated[
    Path,
    typer.Argument(help="A manifests folder (or one manifest file).", show_default=True),
]
SourceArg = Annotated[
    str,
    typer.Argument(
        help="A manifests folder (or one manifest file), or a git URL; URL//folder for a"
        " folder inside the repository.",
        show_default=True,
    ),
]
RefOpt = Annotated[
    str | None,
    typer.Option(
        "--ref",
        help="With a git URL: the branch, tag or commit to read (default: the remote's"
        " default branch).",
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", "-p", help="A profile of reconciler.yaml.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"


FormatOpt = Annotated[ValidateFormat, typer.Option("--format", "-f", help="text or json.")]


def _load(path: Path, profile: str | None, *, variables: bool = True) -> Manifests:
    return load(path, LoadOptions(profile=profile, resolve_variables=variables, cache=True))


def _fetch(location: str, ref: str | None) -> Checkout:
    """The manifests a SOURCE argument names, on disk, with the commit they are at."""
    return checkout.fetch(Origin.parse(location, ref))


def _connector(ctx: typer.Context, kept: KeptConnections | None = None) -> Connector:
    """The installed providers (or what a test put in the context); `kept`: connections
    kept open between runs."""
    found = ctx.find_root().obj
    return found if found is not None else compose.Connector(kept=kept)


def require_target(settings: Settings, target: str, where: str) -> None:
    """An input error, at `where`, when `target` is not configured."""
    if target not in settings.targets:
        raise InputError(
            [
                Problem(
                    where,
                    message=f"no target '{target}' is configured",
                    hint="one of: " + ", ".join(sorted(settings.targets)),
                )
            ]
        )


def confirm(question: str, what: str) -> None:
    """Ask on the terminal; without one, refuse and say how to go on."""
    if not sys.stdin.isatty():
        raise OperationalError(
            f"{what} needs confirmation and there is no terminal to ask on: pass --yes"
            " (nothing was changed)"
        )
    if not typer.confirm(question, default=False):
        raise OperationalError(f"{what} cancelled; nothing was changed")


def long_running() -> None:
    """For commands that run for days (`serve`, `watch`, `sandbox serve`): the cyclic
    garbage collector back on, which `main` leaves off for commands that end soon."""
    gc.enable()


SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select",
        "-s",
        help="Only these resources (id, Kind, Kind/glob, label=value) and what they depend on.",
    ),
]
NoDepsOpt = Annotated[
    bool, typer.Option("--no-deps", help="With --select: leave out what the selection uses.")
]
PruneOpt = Annotated[
    bool | None,
    typer.Option("--prune/--no-prune", help="Delete owned resources that left the manifests."),
]

MaxDeletesOpt = Annotated[
    int, typer.Option("--max-deletes", min=0, help="Refuse a plan that deletes more.")
]
MassDeleteOpt = Annotated[
    bool,
    typer.Option("--allow-mass-delete", help="Allow deleting every owned resource of a target."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show unchanged resources too.")]


class _Masked(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return masked(super().format(record))


def configure_logging(level: str | None) -> None:
    """Log lines (and the tracebacks of internal errors) on stderr at `level`
    (`--debug`, or RECONCILER_LOG=debug|info|warning); None: warnings alone, as Python
    prints them by default. Credentials are masked in every line."""
    if level is None:
        return
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise InputError(
            [
                Problem(
                    "RECONCILER_LOG",
                    message=f"'{level}' is not a log level",
                    hint="use debug, info, warning or error",
                )
            ]
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Masked("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(value)
    logging.getLogger("httpx").setLevel(max(value, logging.INFO))
    logging.getLogger("httpcore").setLevel(max(value, logging.INFO))
