"""The serve configuration: the sources one `reconciler serve --config FILE` reconciles.

A source is what `reconciler serve SOURCE` takes today (a git URL or a folder, a ref, a
folder inside the repository, a profile), with its own schedule, mode and webhook
secrets. Sources are listed, or generated: a git generator makes one source of every
folder of a repository that holds a `reconciler.yaml` (as Argo CD's ApplicationSet git
generator does). Each source keeps its own targets, inventory, locks and run history:
the state its `reconciler.yaml` names (on one PostgreSQL, one schema each:
`postgresql://host/db?schema=team_a`).

Problems are reported at their line of the file, all at once, as for manifests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from reconciler.errors import InputError
from reconciler.manifests.documents import read_documents
from reconciler.manifests.model import Model, name_rule
from reconciler.manifests.reporting import Reporter

SourceName = Annotated[
    str,
    name_rule(
        r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        48,
        "source name",
        "lowercase letters, digits and '-', at most 48 characters",
    ),
]


def reads_as_git_option(value: str) -> bool:
    """Whether git would read `value` as an option (`--upload-pack=CMD` runs CMD), or
    it holds a control character: no source, URL or ref from outside may (checkout
    refuses it at every git call; this file's are refused at their line)."""
    return value.startswith("-") or any(c in value for c in "\0\n\r")


def _not_an_option(value: str | None) -> str | None:
    if value is not None and reads_as_git_option(value):
        raise PydanticCustomError(
            "git_option",
            "'{value}' starts with '-' or holds a control character: git would read it as"
            " an option; write the URL or branch without them",
            {"value": value},
        )
    return value


GitArgument = Annotated[str, AfterValidator(_not_an_option)]


class Webhooks(Model):
    """The environment variables holding this source's webhook secrets."""

    github: str | None = None
    """Default RECONCILER_GITHUB_SECRET."""
    gitlab: str | None = None
    """Default RECONCILER_GITLAB_TOKEN."""
    generic: str | None = None
    """Default RECONCILER_WEBHOOK_TOKEN."""


class Behaviour(Model):
    """How a source is reconciled; `defaults` gives every source these unless it says."""

    mode: Literal["plan", "apply"] | None = None
    interval: str | None = None
    """Between runs, as Flux writes durations (5m, 1h30m); default 5m."""
    schedule: str | None = None
    """A cron expression (UTC) instead of `interval`."""
    prune: bool | None = None
    max_deletes: int | None = Field(default=None, ge=0)
    profile: str | None = None
    webhooks: Webhooks | None = None


class SourceSpec(Behaviour):
    name: SourceName
    url: GitArgument
    """A git URL (https://, ssh://, git@host:path, file://) or a local folder."""
    ref: GitArgument | None = None
    """The branch to follow (default: the remote's default branch)."""
    folder: str = ""
    """The manifests' folder inside the repository (default: its root)."""


class GitGenerator(Behaviour):
    """One source per folder of the repository holding a reconciler.yaml, named
    `<name>-<folder>` (`/` as `-`; the root folder: `<name>`)."""

    name: SourceName
    url: GitArgument
    ref: GitArgument | None = None
    folders: list[str] = Field(default_factory=lambda: ["**"])
    """Globs of the folders to consider (default: all)."""


class Coordination(Model):
    """Replicas of this service sharing the sources through one PostgreSQL."""

    database: str
    """postgresql://user@host:5432/db (the password from PGPASSWORD, as libpq reads it)."""
    lease: str = "15s"
    """How long a source stays with a replica that stopped renewing (killed, paused):
    the longest a source goes unserved after a replica dies."""
    tick: str = "1s"
    """How often a replica beats, renews, claims and takes requests for its sources."""

    @model_validator(mode="after")
    def _postgres(self) -> Coordination:
        if not self.database.startswith(("postgresql://", "postgres://")):
            raise ValueError("coordination.database is a postgresql:// URL")
        return self


class ServeConfig(Model):
    coordination: Coordination | None = None
    """Absent: this process serves every source alone."""
    defaults: Behaviour = Field(default_factory=Behaviour)
    sources: list[SourceSpec] = Field(default_factory=list)
    generators: list[GitGenerator] = Field(default_factory=list)
    parallel_runs: int = Field(default=4, ge=1, le=64)
    """Runs of different sources at once, at most (one run per source at a time)."""
    kept_state_connections: int = Field(default=16, ge=0, le=1000)
    """State stores kept open between runs, those of the sources run last (each closed
    after a minute idle); 0 opens one for each run. With PostgreSQL, each is a
    connection."""

    @model_validator(mode="after")
    def _has_sources(self) -> ServeConfig:
        if not self.sources and not self.generators:
            raise ValueError("no sources and no generators: nothing to reconcile")
        return self


def load_serve_config(path: Path) -> ServeConfig:
    """The serve configuration in `path`; InputError with every problem at its line."""
    display = str(path)
    report = Reporter()
    documents = read_documents(path, display)
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        report.file(
            display, "a serve configuration holds one mapping", "see README: Running at scale"
        )
        raise InputError(report.problems)
    data = documents[0].data
    # Names are unique across sources and generators: each is a schema, a lock, a page.
    # Read from the document itself, so a name taken twice is reported with the rest.
    first: dict[str, str] = {}
    for field in ("sources", "generators"):
        entries = data.get(field)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                continue
            where = f"{field}[{index}]"
            if name in first:
                report.at(
                    display,
                    path,
                    0,
                    (field, index, "name"),
                    f"{where}.name: '{name}' is {first[name]}'s name already",
                    "give every source and generator a name of its own",
                )
            first.setdefault(name, where)
    try:
        config = ServeConfig.model_validate(data)
    except ValidationError as exc:
        report.validation(display, path, 0, (), ServeConfig, data, exc)
        config = None
    if report.problems or config is None:
        raise InputError(sorted(report.problems, key=lambda p: (p.line, p.column)))
    return config
