"""Manifest files to plain documents, with positions recovered on demand.

Speed matters here (10,000 documents must load in well under two seconds), so the
documents are built straight from the event stream of ruamel.yaml's C parser by a small
builder that knows the YAML 1.2 core schema, rather than by ruamel's constructors (about
four times slower) or its round-trip loader (about ten times slower). Positions of every
node are not kept on the fast path: `SourceMap.of(...)` re-reads one file with positions
switched on, which happens only when something in that file has to be reported.

The builder also enforces what a manifest reader must: one UTF-8 file of at most
10 MiB, no tabs in indentation, no duplicate keys, no unknown tags, and no alias
expansion beyond a fixed number of values, checked while parsing so that an alias bomb
is rejected after reading its text once, in bounded memory.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reconciler.errors import BadValue, InputError, Problem
from reconciler.manifests import parse_cache
from reconciler.manifests.parse_cache import ParseCache

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_EXPANDED_VALUES = 100_000

PathKey = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line, 1-based column

_CORE = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
# First characters a plain scalar needs before it can be anything but a string.
_MAYBE_TYPED = frozenset("0123456789+-.~nNtTfF")


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document (or the one JSON value) of a file, as plain Python data."""

    file: str
    index: int
    line: int
    data: Any
    references: bool = True
    """False when the file has no `${`: nothing to resolve (most files; saves a walk)."""


def read_text(path: Path, display: str) -> str:
    """The file's text, or an InputError for what makes it unreadable as a manifest."""
    return decode(read_bytes(path, display), display)


def read_bytes(path: Path, display: str) -> bytes:
    """The file's bytes, refusing a file too large to be a manifest before reading it,
    and anything but a regular file (a FIFO would block the read for ever)."""

    def refused(message: str, hint: str | None = None) -> InputError:
        return InputError([Problem.at(display, 0, 0, message, hint)])

    try:
        # O_NONBLOCK: a FIFO opens without waiting for a writer, then is refused below.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError) as exc:
        strerror = exc.strerror if isinstance(exc, OSError) else None
        raise refused(f"cannot read file: {strerror or exc}") from None
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise refused(
                "not a regular file (a FIFO, socket or device): it is not read",
                "remove it from the manifests folder",
            )
        size = info.st_size
        if size <= MAX_FILE_BYTES:
            try:
                data = file.read(MAX_FILE_BYTES + 1)
            except OSError as exc:
                raise refused(f"cannot read file: {exc.strerror or exc}") from None
            size = max(size, len(data))  # it may have grown while being read
    if size > MAX_FILE_BYTES:
        raise refused(
            f"file is {size / 1024 / 1024:.1f} MiB; manifests are limited to 10 MiB",
            "split it into several files, or move data out of the manifests",
        )
    return data


def decode(raw: bytes, display: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            [
                Problem.at(
                    display,
                    line,
                    column,
                    f"file is not UTF-8 (byte 0x{raw[exc.start]:02x} cannot start a character)",
                    "save the file as UTF-8",
                )
            ]
        ) from None


def read_documents(path: Path, display: str, cache: ParseCache | None = None) -> list[Document]:
    """Every non-empty document of a YAML file, or the one value of a JSON file; from
    `cache` when these exact bytes were parsed before."""
    raw = read_bytes(path, display)
    references = b"${" in raw
    as_json = path.suffix.lower() == ".json"
    digest = parse_cache.key(raw, as_json=as_json) if cache is not None else b""
    parsed = cache.get(digest) if cache is not None else None
    if parsed is None:
        parsed = _parsed(raw, display, as_json=as_json)
        if cache is not None:
            cache.put(digest, parsed)
    return [Document(display, index, line, data, references) for index, line, data in parsed]


def parse_documents(raw: bytes, display: str) -> list[Any]:
    """The non-empty YAML documents of bytes that did not come from a file of the
    repository (a file inside a prebuilt archive), with every bound a manifest file has:
    UTF-8, no alias expansion past 100,000 values, no nesting past `MAX_DEPTH`."""
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(
            [Problem.at(display, 0, 0, "is over the 10 MiB a YAML document may hold here")]
        )
    return [data for _, _, data in _parsed(raw, display, as_json=False)]


def _parsed(raw: bytes, display: str, *, as_json: bool) -> list[tuple[int, int, Any]]:
    text = decode(raw, display)
    try:
        if as_json:
            parsed = [(0, 1, _load_json(text, display))]
        else:
            parsed = [
                (index, line, data)
                for index, line, data, _ in _Builder(display, track=False).documents(text)
                if data is not None
            ]
    except RecursionError:
        raise InputError([_too_deep(display, 1)]) from None
    if _could_nest(raw, MAX_DEPTH):
        deep = [_too_deep(display, at) for _, at, data in parsed if deeper(data, MAX_DEPTH)]
        if deep:
            raise InputError(deep)
    return parsed


MAX_DEPTH = 100
"""Mappings and lists nested deeper than this are refused: no manifest needs it (a
pipeline spec with a pod patch reaches about 15), and what reads documents recursively
(validation, diffs, caches) must never meet a depth that exhausts the stack."""


def _could_nest(raw: bytes, limit: int) -> bool:
    """Whether a file's bytes can hold a value nested `limit` levels: each level is an
    opening bracket or at least one more column of indentation. Most files cannot, and
    are not walked."""
    brackets = raw.count(b"[") + raw.count(b"{")
    return brackets >= limit // 2 or re.search(rb"^[ -]{%d}" % (limit // 2), raw, re.M) is not None


def deeper(data: Any, limit: int) -> bool:
    """Whether `data` nests mappings and lists more than `limit` levels (no recursion):
    deeper data would exhaust the recursion of whatever walks it next (a diff, a merge)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep(display: str, line: int, column: int = 1) -> Problem:
    return Problem.at(
        display,
        line,
        column,
        f"this document nests mappings and lists more than {MAX_DEPTH} levels deep",
        "flatten it: no manifest needs that depth",
    )


def _load_json(text: str, display: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateJsonKey(key)
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        message = f"JSON syntax error: {exc.msg}"
        hint = None
        if exc.msg == "Extra data":
            message = "JSON syntax error: a second JSON value starts here"
            hint = (
                "a JSON file holds one manifest: split the file,"
                " or write YAML with '---' between documents"
            )
        raise InputError([Problem.at(display, exc.lineno, exc.colno, message, hint)]) from None
    except _DuplicateJsonKey as exc:
        line, column = _find_json_key(text, exc.key)
        raise InputError(
            [
                Problem.at(
                    display,
                    line,
                    column,
                    f"duplicate key '{exc.key}'",
                    "remove one of the two; JSON readers silently keep only the last",
                )
            ]
        ) from None


class _DuplicateJsonKey(BadValue):
    """Raised out of json.loads' hook, caught just above with the key's position."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key '{key}'", "keep one of the two")
        self.key = key


def _find_json_key(text: str, key: str) -> Position:
    starts = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    if not starts:
        return (1, 1)
    offset = starts[1] if len(starts) > 1 else starts[0]
    return (text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1)


class SourceMap:
    """Positions of every key and value of one file, by document index and path."""

    _cache: ClassVar[dict[tuple[str, int], SourceMap]] = {}

    def __init__(
        self, values: list[dict[PathKey, Position]], keys: list[dict[PathKey, Position]]
    ) -> None:
        self._values = values
        self._keys = keys

    @classmethod
    def of(cls, path: Path, display: str) -> SourceMap:
        """Positions for `path`, read again with tracking on (cached by path and mtime)."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        cached = cls._cache.get((str(path), stamp))
        if cached is not None:
            return cached
        values: list[dict[PathKey, Position]] = []
        keys: list[dict[PathKey, Position]] = []
        try:
            text = read_text(path, display)
            builder = _Builder(display, track=True)
            for _, _, data, (vpos, kpos) in builder.documents(text):
                if data is not None:
                    values.append(vpos)
                    keys.append(kpos)
        except InputError:
            pass
        result = cls(values, keys)
        cls._cache[(str(path), stamp)] = result
        return result

    def find(self, index: int, path: PathKey, *, key: bool = False) -> Position | None:
        """The position of `path` in document `index`, or of its nearest ancestor."""
        if index >= len(self._values):
            return None
        values, keys = self._values[index], self._keys[index]
        if key and path in keys:
            return keys[path]
        probe = path
        while True:
            if probe in values:
                return values[probe]
            if not probe:
                return None
            probe = probe[:-1]


@dataclass(slots=True)
class _Frame:
    container: dict[str, Any] | list[Any] | None
    key: str | None
    size: int
    anchor: str | None
    path: PathKey
    merges: list[Any] | None
    awaiting_merge: bool


class _Builder:
    """Builds plain documents from parser events (see the module docstring)."""

    def __init__(self, display: str, *, track: bool) -> None:
        self.display = display
        self.track = track

    def _problem(self, mark: Any, message: str, hint: str | None = None) -> InputError:
        line = getattr(mark, "line", -1) + 1
        column = getattr(mark, "column", -1) + 1
        return InputError([Problem.at(self.display, line, column, message, hint)])

    def documents(
        self, text: str
    ) -> Iterator[tuple[int, int, Any, tuple[dict[PathKey, Position], dict[PathKey, Position]]]]:
        _check_tabs(text, self.display)
        try:
            yield from self._documents(_events(text))
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = (exc.problem or exc.context or "invalid YAML").strip()
            if exc.problem and exc.context and exc.context_mark is not None:
                problem += f" ({exc.context.strip()} at line {exc.context_mark.line + 1})"
            hint = None
            if "found unexpected ':'" in problem:
                hint = "quote values that contain ':' inside [...] or {...}, e.g. [\"a:b\"]"
            if "'\\t'" in problem or "\t" in problem:
                problem, hint = "a tab character where YAML expects spaces", "indent with spaces"
            raise self._problem(mark, f"YAML syntax error: {problem}", hint) from None
        except YAMLError as exc:
            raise InputError([Problem.at(self.display, 0, 0, f"YAML error: {exc}")]) from None

    def _documents(
        self, events: Iterator[Any]
    ) -> Iterator[tuple[int, int, Any, tuple[dict[PathKey, Position], dict[PathKey, Position]]]]:
        track = self.track
        scalar_t, map_t, seq_t = ev.ScalarEvent, ev.MappingStartEvent, ev.SequenceStartEvent
        map_end_t, seq_end_t, alias_t = ev.MappingEndEvent, ev.SequenceEndEvent, ev.AliasEvent
        doc_start_t, doc_end_t = ev.DocumentStartEvent, ev.DocumentEndEvent
        index = -1
        doc_line = 1
        root: Any = None
        anchors: dict[str, tuple[Any, int]] = {}
        open_anchors: set[str] = set()
        stack: list[_Frame] = []
        frame = _Frame(None, None, 0, None, (), None, False)
        values: dict[PathKey, Position] = {}
        keys: dict[PathKey, Position] = {}

        for event in events:
            kind = type(event)
            if kind is scalar_t or kind is alias_t:
                if kind is alias_t:
                    name = event.anchor
                    if name in open_anchors:
                        raise self._problem(
                            event.start_mark,
                            f"alias '*{name}' refers to a node that contains it",
                            "a manifest cannot contain itself; copy the values instead",
                        )
                    if name not in anchors:
                        raise self._problem(event.start_mark, f"alias '*{name}' has no anchor")
                    value, size = anchors[name]
                else:
                    container = frame.container
                    if type(container) is dict and frame.key is None and not frame.awaiting_merge:
                        # A mapping key: kept as written, whatever it looks like.
                        key = event.value
                        if key == "<<" and not event.style and event.tag is None:
                            frame.awaiting_merge = True
                            continue
                        if key in container:
                            first = keys.get((*frame.path, key)) if track else None
                            where = f" (first at line {first[0]})" if first else ""
                            raise self._problem(
                                event.start_mark,
                                f"duplicate key '{key}'{where}",
                                "remove one of the two; most YAML readers silently keep the last",
                            )
                        frame.key = key
                        if track:
                            mark = event.start_mark
                            keys[(*frame.path, key)] = (mark.line + 1, mark.column + 1)
                        continue
                    value = self._scalar(event)
                    size = 1
                    if event.anchor:
                        anchors[event.anchor] = (value, 1)
                frame.size += size
                if frame.size > MAX_EXPANDED_VALUES:
                    raise self._too_big(event)
                if track:
                    mark = event.start_mark
                    values[self._child_path(frame)] = (mark.line + 1, mark.column + 1)
                if frame.container is None:
                    root = value
                else:
                    self._add(frame, value, event)
            elif kind is map_t or kind is seq_t:
                tag = event.tag
                if tag is not None and tag not in (_CORE + "map", _CORE + "seq", "!"):
                    raise self._unknown_tag(event)
                if track:
                    mark = event.start_mark
                    values[self._child_path(frame)] = (mark.line + 1, mark.column + 1)
                new: dict[str, Any] | list[Any] = {} if kind is map_t else []
                if frame.container is None and frame.key is None:
                    root = new
                if event.anchor:
                    open_anchors.add(event.anchor)
                stack.append(frame)
                if len(stack) > MAX_DEPTH:
                    # Stopped here, not after: libyaml's scanner slows with the square of
                    # the flow nesting (100,000 brackets took 30 s, a 10 MiB file hours).
                    mark = event.start_mark
                    raise InputError([_too_deep(self.display, mark.line + 1, mark.column + 1)])
                frame = _Frame(
                    new,
                    None,
                    1,
                    event.anchor,
                    self._child_path(frame) if track else (),
                    None,
                    False,
                )
            elif kind is map_end_t or kind is seq_end_t:
                done = frame
                frame = stack.pop()
                if done.merges:
                    assert isinstance(done.container, dict)
                    for source in done.merges:
                        for k, v in source.items():
                            done.container.setdefault(k, v)
                if done.anchor:
                    open_anchors.discard(done.anchor)
                    anchors[done.anchor] = (done.container, done.size)
                frame.size += done.size
                if frame.size > MAX_EXPANDED_VALUES:
                    raise self._too_big(event)
                if frame.container is not None:
                    self._add(frame, done.container, event)
            elif kind is doc_start_t:
                index += 1
                doc_line = event.start_mark.line + 1
                root = None
                anchors = {}
                values, keys = {}, {}
                frame = _Frame(None, None, 0, None, (), None, False)
            elif kind is doc_end_t:
                yield index, doc_line, root, (values, keys)

    def _child_path(self, frame: _Frame) -> PathKey:
        container = frame.container
        if container is None:
            return ()
        if type(container) is dict:
            return (*frame.path, frame.key if frame.key is not None else "<<")
        return (*frame.path, len(container))

    def _add(self, frame: _Frame, value: Any, event: Any) -> None:
        container = frame.container
        if type(container) is list:
            container.append(value)
            return
        assert isinstance(container, dict)
        if frame.awaiting_merge:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(s, dict) for s in sources):
                raise self._problem(
                    event.start_mark,
                    "a merge key '<<' needs a mapping or a list of mappings",
                )
            frame.merges = (frame.merges or []) + list(sources)
            frame.awaiting_merge = False
            return
        if frame.key is None:
            raise self._problem(
                event.start_mark,
                "a mapping key must be a plain string, not a list or mapping",
                "write the key as text",
            )
        container[frame.key] = value
        frame.key = None

    def _too_big(self, event: Any) -> InputError:
        return self._problem(
            event.start_mark,
            f"anchors and aliases expand this document to more than {MAX_EXPANDED_VALUES:,} values",
            "write the values out, or use fewer nested aliases",
        )

    def _unknown_tag(self, event: Any) -> InputError:
        return self._problem(
            event.start_mark,
            f"unsupported YAML tag '{event.tag}'",
            "remove the tag: manifests are plain YAML (tags such as !Ref are not evaluated)",
        )

    def _scalar(self, event: Any) -> Any:
        value: str = event.value
        tag = event.tag
        if tag is not None:
            return self._tagged(event, tag, value)
        if event.style:  # quoted or block scalars are always strings
            return value
        if not value:
            return None
        if value[0] not in _MAYBE_TYPED:
            return value
        return _resolve_plain(value)

    def _tagged(self, event: Any, tag: str, value: str) -> Any:
        if tag in ("!", _CORE + "str"):
            return value
        if tag == _CORE + "null":
            return None
        resolved = _resolve_plain(value)
        wanted = {
            _CORE + "int": int,
            _CORE + "float": float,
            _CORE + "bool": bool,
        }.get(tag)
        if wanted is None:
            raise self._unknown_tag(event)
        if wanted is float and type(resolved) is int:
            return float(resolved)
        if type(resolved) is not wanted:
            raise self._problem(
                event.start_mark, f"'{value}' is not a valid {tag.removeprefix(_CORE)}"
            )
        return resolved


_PARSER = YAML(typ="safe").Parser


def _events(text: str) -> Iterator[Any]:
    """Parser events; straight from the C parser when it is there (ruamel's own
    generator around it costs a quarter of the parsing time)."""
    if hasattr(_PARSER, "get_event"):
        parser = _PARSER(text)
        try:
            yield from iter(parser.get_event, None)
        finally:
            parser.dispose()
    else:
        yield from YAML(typ="safe", pure=True).parse(text)


def _resolve_plain(value: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema (no timestamps, no yes/no)."""
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _INT.match(value):
        return int(value)
    if _INT_OCT.match(value):
        return int(value[2:], 8)
    if _INT_HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return float("-inf") if value[0] == "-" else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value


def _check_tabs(text: str, display: str) -> None:
    """Tabs in indentation: libyaml's own message for them is hard to read."""
    if "\t" not in text:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t") and stripped.strip():
            column = len(line) - len(stripped) + 1
            raise InputError(
                [
                    Problem.at(
                        display,
                        number,
                        column,
                        "a tab character in the indentation; YAML indents with spaces only",
                        "replace the tabs at the start of this line with spaces",
                    )
                ]
            )
