"""`${env:NAME}` and `${file:path}` references, and the sensitive values they become.

A string that contains a reference becomes a `Sensitive`: its str, repr, format and
JSON forms are all `(sensitive)`; the clear text is reachable only through `reveal()`,
which the providers call when they build a request. It compares and hashes by digest,
so plans can tell a change without showing it. It is deliberately not a `str` subclass:
a subclass would leak through `json.dumps`, `+` and `%`.

`$${` writes a literal `${`. Other `${...}` forms (shell's `${HOME}`, `${X:-y}`) are left
alone: only the `env` and `file` schemes are ours.

`${file:...}` reads only regular files inside the manifests root (after resolving every
symlink), or inside folders that `reconciler.yaml` allows by name (`files.allow`, for a
CI secrets mount), and no more than `files.maxBytes` (1 MiB by default): a pull request
can change any manifest, so a reference must not copy `/proc/self/environ` or
`~/.ssh/id_rsa` into a platform secret, nor block on a FIFO or read `/dev/zero` forever.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from reconciler.errors import BadValue, has_control

REDACTED = "(sensitive)"

_REFERENCE = re.compile(r"\$(\$?)\{(env|file):([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VariableError(BadValue):
    """A reference that cannot be resolved; the loader turns it into a Problem."""


class Sensitive:
    """A value that must never be shown. Compare, hash and diff it by `digest`."""

    __slots__ = ("_resolve", "_value", "expression")

    def __init__(
        self,
        expression: str,
        value: str | None = None,
        *,
        resolve: Callable[[], str] | None = None,
    ) -> None:
        self.expression = expression
        self._value = value
        self._resolve = resolve

    def reveal(self) -> str:
        """The clear text: for building a platform request, and nothing else."""
        if self._value is None:
            if self._resolve is None:
                raise VariableError(
                    f"{self.expression} was not resolved",
                    "run without --no-variables to resolve references",
                )
            self._value = self._resolve()
        return self._value

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.reveal().encode()).hexdigest()

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Sensitive({REDACTED})"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sensitive):
            return NotImplemented
        if self._value is None or other._value is None:
            return self.expression == other.expression
        return self.expression == other.expression and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.expression)

    def __reduce__(self) -> Any:
        raise TypeError("Sensitive values are not pickled: they would leave in clear")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_sensitive, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string"}


def _serialize_sensitive(value: Sensitive, info: core_schema.SerializationInfo) -> str | Sensitive:
    # Dumping manifests back to YAML writes the reference, never the value; providers
    # dump specs keeping the Sensitive object itself, to reveal it only in a request.
    context = info.context or {}
    if context.get("keep_sensitive"):
        return value
    return value.expression if context.get("expressions") else REDACTED


def _validate_value(value: Any) -> str | Sensitive:
    if isinstance(value, str | Sensitive):
        return value
    kind = "a number" if isinstance(value, int | float) and not isinstance(value, bool) else None
    kind = kind or ("true/false" if isinstance(value, bool) else type(value).__name__)
    raise PydanticCustomError(
        "value_type",
        "expected text, got {kind}; quote it so YAML keeps it as text",
        {"kind": kind},
    )


class _ValueAnnotation:
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_value,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_value, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": "text; may use ${env:NAME} or ${file:path}"}


def _serialize_value(
    value: str | Sensitive, info: core_schema.SerializationInfo
) -> str | Sensitive:
    if isinstance(value, Sensitive):
        return _serialize_sensitive(value, info)
    return value


def is_sensitive(value: object) -> bool:
    return isinstance(value, Sensitive)


def reveal(value: str | Sensitive) -> str:
    return value.reveal() if isinstance(value, Sensitive) else value


SCRUBBED_MIN = 4
"""The shortest sensitive value `scrubbed` takes out of text (a shorter one would take
out ordinary words, and say what the value is not)."""


def scrubbed(text: str, spec: Any) -> str:
    """`text` without the clear value of any sensitive value in `spec` (nor its base64,
    as a Kubernetes secret holds it): for a platform's message about a request that
    carried them, which some platforms echo."""
    for value in sorted(_sensitive_values(spec), key=len, reverse=True):
        if len(value) >= SCRUBBED_MIN:
            for form in (value, base64.b64encode(value.encode()).decode()):
                text = text.replace(form, REDACTED)
    return text


def _sensitive_values(value: Any) -> set[str]:
    if isinstance(value, Sensitive):
        try:
            return {value.reveal()}
        except VariableError:  # never resolved: never sent
            return set()
    if isinstance(value, Mapping):
        return set().union(*(_sensitive_values(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(_sensitive_values(item) for item in value))
    return set()


DEFAULT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FileAccess:
    """Where `${file:...}` may read: inside `root` or an `allowed` folder, after
    resolving symlinks; regular files of at most `max_bytes`."""

    root: Path
    allowed: tuple[Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES

    def check(self, path: Path, shown: str) -> Path:
        """The real path of `path` if it may be read; a VariableError otherwise."""
        real = Path(os.path.realpath(path))
        folders = [Path(os.path.realpath(f)) for f in (self.root, *self.allowed)]
        if not any(real == f or f in real.parents for f in folders):
            raise VariableError(
                f"{shown} is outside the manifests folder {self.root}",
                "reference a file inside the repository, or allow its folder in"
                " reconciler.yaml (files: {allow: [/path/to/folder]})",
            )
        return real

    def read(self, path: Path, shown: str) -> str:
        real = self.check(path, shown)
        try:
            # O_NONBLOCK: a FIFO opens without waiting for a writer, then is refused below.
            handle = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise VariableError(
                f"cannot read {shown}: {exc.strerror or exc}",
                "create the file, or fix the path (relative paths start at the manifest's folder)",
            ) from None
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise VariableError(
                f"{shown} is not a regular file (a folder, device, FIFO or socket)",
                "reference a regular file",
            )
        with os.fdopen(handle, "rb") as file:
            data = file.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise VariableError(
                f"{shown} is larger than {self.max_bytes} bytes",
                "reference a smaller file, or raise files.maxBytes in reconciler.yaml",
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise VariableError(
                f"{shown} is not UTF-8 text",
                "store the value as text (base64 it if it is binary)",
            ) from None


@dataclass(frozen=True)
class Resolver:
    """Resolves references for one manifest file.

    `env` is the environment to read (the process's by default); `base` is the folder
    that relative `${file:...}` paths start from. With `check_only`, references are
    checked for form but not read (for `validate --no-variables` in pre-commit hooks,
    where secrets are absent); with `defer`, they are read on first `reveal()`.
    """

    base: Path
    env: Mapping[str, str] | None = None
    check_only: bool = False
    defer: bool = False
    files: FileAccess | None = field(default=None)
    """Where files may be read from; default: only below `base`."""

    def text(self, text: str) -> str | Sensitive:
        """`text` itself, with `$${` unescaped, or a Sensitive if it holds a reference."""
        if "${" not in text:
            return text
        found = False
        for match in _REFERENCE.finditer(text):
            if not match.group(1):
                found = True
                self._check(match.group(2), match.group(3))
        if not found:
            return text.replace("$${", "${")
        if self.check_only:
            return Sensitive(text)
        if self.defer:
            return Sensitive(text, resolve=lambda: self._substitute(text))
        return Sensitive(text, self._substitute(text))

    def _substitute(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            return self._read(match.group(2), match.group(3))

        return _REFERENCE.sub(one, text)

    def _check(self, scheme: str, arg: str) -> None:
        if scheme == "env" and not _ENV_NAME.match(arg):
            raise VariableError(
                f"'${{env:{arg}}}' is not a valid environment variable name",
                "use letters, digits and '_', not starting with a digit",
            )
        if scheme == "file" and not arg.strip():
            raise VariableError("'${file:}' names no file", "write ${file:path/to/file}")
        if scheme == "file" and has_control(arg):
            # A NUL no file system takes (Python refuses to ask); no file name needs one.
            raise VariableError(
                f"'${{file:{arg}}}' holds a control character",
                "write the path to a file inside the repository",
            )

    def _read(self, scheme: str, arg: str) -> str:
        if scheme == "env":
            env = os.environ if self.env is None else self.env
            if arg not in env:
                raise VariableError(
                    f"environment variable {arg} is not set (referenced as ${{env:{arg}}})",
                    f"export {arg} before running, or set it in your CI secrets",
                )
            return env[arg]
        shown = f"{arg} (referenced as ${{file:{arg}}})"
        if arg.startswith("~"):
            raise VariableError(
                f"{shown}: paths in a home folder are not read",
                "reference a file inside the repository",
            )
        path = Path(arg)
        if not path.is_absolute():
            path = self.base / path
        return (self.files or FileAccess(self.base)).read(path, shown)


def resolve_tree(
    data: Any, resolver: Resolver, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], VariableError]]:
    """Replace, in place, every string in `data` that holds a reference; yield failures."""
    if isinstance(data, dict):
        items: Iterator[tuple[Any, Any]] = iter(list(data.items()))
    elif isinstance(data, list):
        items = enumerate(list(data))
    else:
        return
    for key, value in items:
        if isinstance(value, str):
            if "${" in value:
                try:
                    data[key] = resolver.text(value)
                except VariableError as exc:
                    yield (*path, key), exc
        elif isinstance(value, dict | list):
            yield from resolve_tree(value, resolver, (*path, key))


Value = Annotated[str | Sensitive, _ValueAnnotation]
"""Text that may be given through `${env:...}` or `${file:...}`."""
