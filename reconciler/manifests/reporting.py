"""Turning what is wrong with a document into Problems at file:line:column."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_snake
from pydantic_core import ErrorDetails

from reconciler.errors import Problem
from reconciler.manifests.documents import SourceMap
from reconciler.manifests.model import field_names
from reconciler.manifests.resources import PathKey, dotted
from reconciler.manifests.values import Sensitive


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt `word`, if one is close enough."""
    pool = list(candidates)
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower().replace("_", ""): c for c in pool}
        return lowered.get(word.lower().replace("_", "").replace("-", ""))
    return matches[0]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = suggest(word, candidates)
    return f"; did you mean '{match}'?" if match else ""


def show_path(path: PathKey) -> str:
    return dotted(path) or "(document)"


class ProblemAt(Protocol):
    """Reports a problem at a path of the document being checked."""

    def __call__(
        self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False
    ) -> None: ...


class Reporter:
    """Collects problems for one run; positions are looked up only when needed."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def file(self, display: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(display, 0, 0, message, hint))

    def at(
        self,
        display: str,
        real: Path,
        index: int,
        path: PathKey,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        fallback_line: int = 0,
    ) -> None:
        position = SourceMap.of(real, display).find(index, path, key=key)
        line, column = position if position else (fallback_line, 1)
        self.problems.append(Problem(display, line, column, message, hint))

    def validation(
        self,
        display: str,
        real: Path,
        index: int,
        prefix: PathKey,
        model: type[BaseModel] | None,
        data: Any,
        error: ValidationError,
        *,
        fallback_line: int = 0,
        note: str = "",
    ) -> None:
        """One problem per pydantic error, at the spot in the file it concerns."""
        seen: set[tuple[PathKey, str]] = set()
        for detail in error.errors():
            path, message, hint, key = explain(detail, data, model)
            full = (*prefix, *path)
            if (full, message) in seen:
                continue
            seen.add((full, message))
            self.at(
                display,
                real,
                index,
                full,
                f"{show_path(full)}: {message}{note}",
                hint,
                key=key,
                fallback_line=fallback_line,
            )


def explain(
    detail: ErrorDetails, data: Any, model: type[BaseModel] | None
) -> tuple[PathKey, str, str | None, bool]:
    """(path in the data, message, hint, whether the position is the key's)."""
    path = data_path(data, detail["loc"])
    kind = detail["type"]
    value = detail.get("input")
    if kind == "extra_forbidden":
        unknown = str(detail["loc"][-1])
        parent = path[:-1] if path and path[-1] == unknown else path
        fields = fields_at(model, parent) if model is not None else []
        message = f"unknown field '{unknown}'{did_you_mean(unknown, fields)}"
        hint = "remove it or fix its spelling" + (
            f"; fields here: {', '.join(fields)}" if fields and len(fields) <= 12 else ""
        )
        return (*parent, unknown), message, hint, True
    if kind == "union_tag_invalid":
        ctx = detail.get("ctx", {})
        field = str(ctx.get("discriminator", "")).strip("'")
        return (
            (*path, field),
            f"{field} '{ctx.get('tag')}' is not known; expected {ctx.get('expected_tags')}",
            None,
            False,
        )
    if kind == "missing":
        name = str(detail["loc"][-1])
        parent = path[:-1] if path and path[-1] == name else path
        return parent, f"missing required field '{name}'", f"add '{name}'", False
    if isinstance(value, Sensitive) and kind in {"string_type", "invalid_name"}:
        return (
            path,
            "${env:...} and ${file:...} cannot be used here",
            "names and references must be written out in the manifest",
            False,
        )
    message = detail["msg"]
    if kind.startswith("literal_error") or kind == "enum":
        allowed = _allowed(detail)
        message = f"'{value}' is not allowed; expected {detail.get('ctx', {}).get('expected', '')}"
        if isinstance(value, str) and allowed:
            message += did_you_mean(value, allowed)
    elif kind in {
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "dict_type",
        "list_type",
        "model_type",
        "model_attributes_type",
    }:
        message = f"{_expected(kind)}, got {_describe(value)}"
        if kind == "string_type" and isinstance(value, int | float):
            return path, message, "quote the value so that YAML keeps it as text", False
    elif kind in {"value_error", "assertion_error"}:
        message = message.removeprefix("Value error, ")
    return path, message, None, False


def _allowed(detail: ErrorDetails) -> list[str]:
    expected = str(detail.get("ctx", {}).get("expected", ""))
    return [part.strip(" '") for part in expected.replace(" or ", ",").split(",") if part.strip()]


def _expected(kind: str) -> str:
    return {
        "string_type": "expected text",
        "int_type": "expected a whole number",
        "float_type": "expected a number",
        "bool_type": "expected true or false",
        "dict_type": "expected a mapping",
        "list_type": "expected a list",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }[kind]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'" if len(value) < 40 else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def data_path(data: Any, loc: tuple[int | str, ...]) -> PathKey:
    """Project a pydantic location onto the data: drop union tags and validator names."""
    path: list[str | int] = []
    node = data
    for part in loc:
        found, child, key = _child(node, part)
        if found:
            path.append(key)
            node = child
        elif isinstance(node, dict) and part in {v for v in node.values() if isinstance(v, str)}:
            continue  # a discriminated union's tag: the value of its discriminator field
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            path.append(part)  # a missing or unknown key: named, though absent
            node = None
    return tuple(path)


def _child(node: Any, part: int | str) -> tuple[bool, Any, int | str]:
    if isinstance(node, dict) and part in node:
        return True, node[part], part
    if isinstance(node, dict) and isinstance(part, str) and to_snake(part) in node:
        return True, node[to_snake(part)], to_snake(part)  # snake_case, as pachctl takes
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part], part
    return False, None, part


def _is_tag(part: str) -> bool:
    # pydantic names union members and validators in locations: `str`, `function-after[...]`.
    return "[" in part or part in {"str", "int", "float", "bool", "list", "dict"}


def fields_at(model: type[BaseModel] | None, path: PathKey) -> list[str]:
    """The documented field names of the model found at `path` below `model`."""
    current: Any = model
    for part in path:
        current = _child_type(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return field_names(current)
    return []


def _child_type(annotation: Any, part: str | int) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(part, int):
            return None
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return _unwrap(info.annotation)
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        return _unwrap(args[0]) if isinstance(part, int) else None
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin is typing.Union or isinstance(annotation, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1:
                return models[0]
            if len(options) == 1:
                annotation = options[0]
                continue
            containers = [a for a in options if typing.get_origin(a) in (list, dict)]
            if len(containers) == 1:
                return containers[0]
        return annotation
