"""Layer 8: the command line (typer).

Rule: the only place that reads flags, prints, and maps errors to exit codes:
0 success, 1 operational error, 2 changes pending (plan --detailed-exitcode),
3 invalid input (nothing contacted). Bad flags are invalid input too: exit 3.
One module per command group (`validate`, `plan`, `apply`, `doctor`, `state`,
`automation`, `serve`, `watch`, `sandbox`); this one registers them and runs the command.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Annotated, NoReturn

import typer

from reconciler import __version__
from reconciler.cli import apply as apply_cli
from reconciler.cli import automation as automation_cli
from reconciler.cli import doctor as doctor_cli
from reconciler.cli import package as package_cli
from reconciler.cli import plan as plan_cli
from reconciler.cli import sandbox as sandbox_cli
from reconciler.cli import serve as serve_cli
from reconciler.cli import state as state_cli
from reconciler.cli import validate as validate_cli
from reconciler.cli import watch as watch_cli
from reconciler.cli.common import configure_logging, err, out
from reconciler.errors import InputError, OperationalError, ReconcilerError
from reconciler.reconcile import Connector
from reconciler.redact import masked
from reconciler.render import validation as validation_render

CONTRACT_FILE = validate_cli.CONTRACT_FILE

app = typer.Typer(
    name="reconciler",
    help="Declarative GitOps reconciler for kdb Insights and Pachyderm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

app.command("validate")(validate_cli.validate)
app.command("graph")(validate_cli.graph_command)
app.command("schema")(validate_cli.schema)
app.command("plan")(plan_cli.plan)
app.command("apply")(apply_cli.apply)
app.command("doctor")(doctor_cli.doctor)
app.add_typer(package_cli.app, name="package")
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(state_cli.app, name="state")
app.command("status")(state_cli.status)
app.command("unlock")(state_cli.unlock)
app.command("suspend")(automation_cli.suspend)
app.command("resume")(automation_cli.resume)
app.command("sync")(automation_cli.sync)
app.command("rollback")(automation_cli.rollback)
app.command("serve")(serve_cli.serve)
app.command("watch")(watch_cli.watch)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Log every step on stderr, with the traceback of any internal error"
            " (also: RECONCILER_LOG=debug).",
        ),
    ] = False,
) -> None:
    if debug:
        configure_logging("debug")
    if version:
        out.print(f"reconciler {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None, connector: Connector | None = None) -> None:
    """Entry point: run a command and exit with its code; never a traceback for input.

    `connector` chooses the provider of each target (tests hand in fakes); by default
    each target's `provider` picks the platform subpackage.
    """
    command = typer.main.get_command(app)
    # A run builds hundreds of thousands of small objects (documents, specs,
    # observations), nearly all acyclic and kept until it ends: the cyclic collector
    # would scan them again and again (a third of a 10,000-resource plan with the default
    # thresholds, 7% with rare ones) to free almost nothing; reference counting frees the
    # rest. A command ends within minutes, so it runs without; `serve` and `watch`, which
    # run for days, switch it back on (`long_running`).
    enabled = gc.isenabled()
    gc.disable()
    root = logging.getLogger()
    logged = (list(root.handlers), root.level)
    try:
        configure_logging(os.environ.get("RECONCILER_LOG") or None)
        result = command.main(
            args=argv, prog_name="reconciler", standalone_mode=False, obj=connector
        )
        code = result if isinstance(result, int) else 0
    except typer.Abort:
        err.print("aborted")
        code = 1
    except InputError as exc:
        err.print(masked(validation_render.problems_text(exc.problems)), markup=False)
        code = exc.exit_code
    except ReconcilerError as exc:
        err.print(masked(f"error: {exc}"), markup=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except OSError as exc:
        code = _internal(exc) if exc.filename is None else _file_system(exc)
    except Exception as exc:
        # typer carries its own copy of click, whose UsageError is not public: know it by name.
        if any(cls.__name__ == "UsageError" for cls in type(exc).__mro__):
            exc.show()  # type: ignore[attr-defined]
            code = InputError.exit_code
        else:
            code = _internal(exc)
    finally:
        if enabled:
            gc.enable()
        # As it was: a caller that runs several commands in one process (the tests, a
        # script) keeps its own logging.
        root.handlers[:] = logged[0]
        root.setLevel(logged[1])
    sys.exit(code)


def _file_system(exc: OSError) -> int:
    # A folder the machine will not give (a cache set to a file, a home that is not
    # there, no permission): the environment's, not a bug; said as an operational
    # error, with where to look.
    logging.getLogger("reconciler").debug("file system error", exc_info=exc)
    err.print(masked(f"error: {exc.strerror or exc}: {exc.filename}"), markup=False)
    err.print(
        "  check that path and its permissions (reconciler keeps its caches under"
        " RECONCILER_CACHE, else XDG_CACHE_HOME/reconciler, else ~/.cache/reconciler)",
        markup=False,
    )
    return OperationalError.exit_code


def _internal(exc: BaseException) -> int:
    # A bug of ours or of a provider plugin: said in one line; the traceback goes to the
    # log, printed with --debug or RECONCILER_LOG=debug.
    logging.getLogger("reconciler").debug("internal error", exc_info=exc)
    err.print(masked(f"internal error: {type(exc).__name__}: {exc}"), markup=False)
    err.print(
        "  this is a bug: run again with --debug for its traceback, and report it",
        markup=False,
    )
    return 1


def run() -> NoReturn:
    """The `reconciler` command: `main`, then an exit that skips the interpreter's
    teardown. A large run holds a few hundred megabytes of small objects, and freeing
    them one by one at exit takes longer than many commands (0.2 s of a 2 s plan);
    every file, database and connection is closed by then, and output is flushed here."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`reconciler plan | head`)
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()
