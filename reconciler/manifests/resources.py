"""Typed resources: the envelope every manifest shares, ids, origins and references."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, NamedTuple

from pydantic import Field
from typing_extensions import TypeVar

from reconciler.errors import printable
from reconciler.manifests.model import Model

PathKey = tuple[str | int, ...]


def dotted(path: PathKey) -> str:
    """A path as people read it: keys joined by dots, list indices in brackets. A key
    is a manifest's: its control characters (line breaks, ESC) are written as escapes,
    so that a path printed in a plan, a pull request comment or a CI log stays on its
    line and cannot drive the terminal."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return printable(text)


_ID = re.compile(r"(?:(?P<target>[A-Za-z0-9_.-]+):)?(?P<kind>[A-Z][A-Za-z]*)/(?P<name>[^\s]+)\Z")


class ResourceId(NamedTuple):
    """`<target>:<Kind>/<name>`; for pachyderm kinds below Project, name is `project/name`.

    A named tuple rather than a dataclass: ids are hashed millions of times in graphs of
    10,000 resources, and a tuple hashes in C.
    """

    target: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.target}:{self.kind}/{self.name}"

    @staticmethod
    def parse(text: str, default_target: str | None = None) -> ResourceId | None:
        """An id from its text form; the target may be left out if a default is given."""
        match = _ID.match(text.strip())
        if not match:
            return None
        target = match.group("target") or default_target
        if target is None:
            return None
        return ResourceId(target, match.group("kind"), match.group("name"))


class Metadata(Model):
    name: str
    project: str | None = None
    target: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    protect: bool = False
    deletion_policy: Literal["Delete", "Orphan"] = "Delete"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource was written: for error messages and `graph` output."""

    file: str
    """As shown to users: relative to the manifests root where possible."""
    path: Path
    """The real file, to recover positions from."""
    index: int
    """The document's index in its file."""
    line: int
    """The line the document starts at."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Reference:
    """An implicit dependency written inside a spec (or a dependsOn entry)."""

    kinds: tuple[str, ...]
    """Any resource of one of these kinds, with `name`, on the same target, satisfies it."""
    name: str
    path: PathKey
    """Where in the document it is written."""
    what: str
    """What the reference is, for messages: "pfs input", "package", ..."""
    required: bool = True
    """A missing required reference is an input error; others are simply no edge."""
    hint: str = ""
    target: str | None = None
    """The target it lives on; None: the referring resource's own."""


Spec_co = TypeVar("Spec_co", bound=Model, default=Model, covariant=True)
"""A kind's spec model: `Resource[PipelineSpec]` travels from the loader to the provider."""


@dataclass(frozen=True, slots=True)
class Resource(Generic[Spec_co]):
    """One manifest, validated: its spec is its kind's model, typed."""

    id: ResourceId
    api_version: str
    metadata: Metadata
    spec: Spec_co
    origin: Origin
    project: str | None = None
    references: tuple[Reference, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.id.kind

    @property
    def target(self) -> str:
        return self.id.target

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_data(self) -> dict[str, object]:
        """The manifest this resource was loaded from, in canonical form."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata.to_data(),
            "spec": self.spec.to_data(),
        }
