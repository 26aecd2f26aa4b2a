"""Layer 0: the one exception hierarchy of reconciler.

Rule: every module raises only these (or lets programming errors surface as they are);
the command line maps them to exit codes and never shows a traceback for them.

    ReconcilerError                 base of everything a user can cause or meet
    ├── InputError                  invalid manifests, configuration, plan file or
    │                               arguments; exit 3; raised before any platform is
    │                               contacted; carries every Problem found
    ├── BadValue                    one value that is wrong, before its place in a file
    │   │                           is known (message and hint); whoever read it turns
    │   │                           it into a Problem at file:line; exit 3 if it escapes
    │   ├── VariableError           (manifests.values) a ${env:...} or ${file:...}
    │   │                           reference that cannot be resolved
    │   └── PackageFileError        (providers.insights.package_files) a package folder
    │                               that cannot become an artifact
    └── OperationalError            the platforms or the machine misbehaved; exit 1
        ├── RetryableError          may succeed if tried again: timeouts, connection
        │   │                       resets, 429, 5xx, a lock held by a live holder
        │   ├── RetryableHttpError  (providers.http) with the HTTP status and gRPC code
        │   └── LockedError         (state.locks) a target's lock held by a live run
        ├── PermanentError          will fail again the same way: refused, conflict,
        │   │                       not found, a platform's validation error
        │   ├── HttpError           (providers.http) with the HTTP status and gRPC code
        │   └── PluginError         an installed provider plugin cannot be used
        ├── LockLost                (state.locks) this run's locks were taken over: it
        │                           makes no further call
        └── GitError                (checkout) a git command failed (message scrubbed)

Anything else that escapes is a bug: the command line says so in one line and logs the
traceback (`--debug`, RECONCILER_LOG=debug); the executor records it as the failure of
the one action it happened in. The sandbox's own exceptions are answers it builds and
never leave it.

`retryable` is a class attribute so that callers (the executor's retry policy) can ask
any exception without importing the concrete classes; so is `refused` (overridable per
instance), whether the platform certainly did not carry the call out (what the executor
records of a failed create, `reconciler.execute`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (what `printable` escapes): a name or a
    path no file system or platform needs one in (and none takes a NUL)."""
    return _CONTROL.search(text) is not None


def printable(text: str) -> str:
    """`text` fit for one line of a terminal or a CI log: each control character (a line
    break, the ESC of a terminal's escape sequence, ...) written as its JSON escape.
    Text from a manifest, a file name or a platform then can neither start a line of its
    own (GitHub Actions reads a line that starts with `::` as a workflow command) nor
    drive the terminal."""
    return _CONTROL.sub(lambda found: json.dumps(found.group())[1:-1], text)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, at a place a user can open in an editor.

    Ordered by file, then line, then column, so reports read top to bottom.
    `line` and `column` are 1-based; 0 means "the whole file".
    """

    file: str
    line: int = 0
    column: int = 0
    message: str = ""
    hint: str | None = field(default=None, compare=False)

    def location(self) -> str:
        if self.line <= 0:
            return printable(self.file)
        return f"{printable(self.file)}:{self.line}:{self.column or 1}"

    def format(self) -> str:
        """Two lines at most, whatever the manifest or file name held."""
        text = f"{self.location()}: {printable(self.message)}"
        if self.hint:
            text += f"\n    fix: {printable(self.hint)}"
        return text

    @staticmethod
    def at(
        file: Path | str, line: int, column: int, message: str, hint: str | None = None
    ) -> Problem:
        return Problem(str(file), line, column, message, hint)


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""

    exit_code: int = 1
    retryable: bool = False


class InputError(ReconcilerError):
    """The input is wrong; nothing was contacted. Holds every problem found, sorted."""

    exit_code = 3

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the input"
            + ("" if not count else ":\n" + "\n".join(p.format() for p in self.problems))
        )


class BadValue(ReconcilerError):
    """One value of the input that is wrong, found before its place in a file is known;
    the reader turns it into a `Problem` at file:line."""

    exit_code = 3

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class OperationalError(ReconcilerError):
    """Something outside the input failed: a platform, the network, the state store.

    `refused` is true only when the platform certainly did not carry the call out: the
    request never left, or the platform answered it with a refusal (an `HttpError`, a
    429). Otherwise (a timeout, a dropped connection, a 5xx that a gateway may send after
    its backend did the work, a wait that failed after the request succeeded) it may
    have happened. Each class says what is usual; a raiser that knows better says so."""

    exit_code = 1
    refused: bool = False

    def __init__(self, message: str = "", *, refused: bool | None = None) -> None:
        super().__init__(message)
        if refused is not None:
            self.refused = refused


class RetryableError(OperationalError):
    """Worth trying again, after a pause: the same call may well succeed. `refused` when
    the connection was never made, or the platform answered "too many requests"."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, refused: bool | None = None
    ) -> None:
        super().__init__(message, refused=refused)
        self.retry_after = retry_after


class PermanentError(OperationalError):
    """Trying again would fail the same way: usually the platform refused the call
    (`refused`); a wait that fails after the call succeeded says `refused=False`."""

    refused = True


class PluginError(PermanentError):
    """A provider plugin that is installed but cannot be used: it failed to import, its
    entry point names something else, or two plugins declare the same kind."""
