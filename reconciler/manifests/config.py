"""`reconciler.yaml`: targets, state, pruning, manifest globs and profiles.

A profile is resolved on the raw data before validation: its ancestors (`extends`, in
order, each once, parents before children) then itself deep-merge their `targets` onto
the top-level ones, add their `patches` in order, and the nearest `select`, `prune` and
`state` win. Without the file, every target is the embedded sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reconciler.manifests.model import Model, Value
from reconciler.manifests.values import DEFAULT_MAX_BYTES, FileAccess

CONFIG_FILE = "reconciler.yaml"
DEFAULT_STATE = "sqlite:///.reconciler/state.db"
EMBEDDED = "embedded"


class TargetConfig(Model):
    """What every target has; a provider plugin's target model extends it with a
    `provider: Literal["<its name>"]` field and whatever its platform needs."""

    provider: str
    url: str = EMBEDDED
    """`embedded` (the in-process sandbox) or the platform's https:// address."""
    ca_bundle: str | None = None
    verify_tls: bool = True
    timeout: float = Field(default=30.0, gt=0)
    """Seconds one call may take before it counts as failed (and retryable)."""

    @field_validator("url")
    @classmethod
    def _http_or_embedded(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if url == EMBEDDED or (sep and scheme.lower() in ("http", "https") and rest.strip("/")):
            return url
        raise ValueError(
            f"'{url}' is neither 'embedded' nor an http:// or https:// address"
            " (write https://host[:port])"
        )

    retries: int = Field(default=4, ge=0, le=20)
    """Further tries of a read that failed in a retryable way (5xx, 429, timeout, reset),
    with exponential backoff from half a second, never sooner than Retry-After. (The
    executor retries mutating calls itself, each try in the intent log.)"""


class Match(Model):
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    """A glob: `edges-*`."""
    target: str | None = None
    project: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def matches(
        self,
        api_version: str,
        kind: str,
        name: str,
        target: str,
        project: str | None,
        labels: dict[str, str],
    ) -> bool:
        return (
            (self.api_version is None or self.api_version == api_version)
            and (self.kind is None or self.kind == kind)
            and (self.name is None or fnmatchcase(name, self.name))
            and (self.target is None or self.target == target)
            and (self.project is None or self.project == project)
            and all(labels.get(k) == v for k, v in self.labels.items())
        )


class PatchRule(Model):
    match: Match = Field(default_factory=Match)
    patch: dict[str, Any]
    """Merged onto each matching manifest (see reconciler.manifests.merge)."""


class Profile(Model):
    extends: list[str] = Field(default_factory=list)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Merged onto the top-level targets: `{insights: {url: https://...}}`."""
    select: list[str] | None = None
    patches: list[PatchRule] = Field(default_factory=list)
    prune: bool | None = None
    state: str | None = None


class Files(Model):
    """Where `${file:...}` references may read besides the manifests folder."""

    allow: list[str] = Field(default_factory=list)
    """Folders outside the manifests folder that may be read (a CI secrets mount):
    absolute, or relative to reconciler.yaml. None by default."""
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """The largest file a reference may read."""

    def access(self, root: Path) -> FileAccess:
        return FileAccess(root, tuple(root / folder for folder in self.allow), self.max_bytes)


NotificationEvent = Literal["run-failed", "run-recovered", "drift", "degraded", "refused"]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = (
    "run-failed",
    "run-recovered",
    "drift",
    "degraded",
    "refused",
)


class Sink(Model):
    """Where `serve` sends notifications: a Slack incoming webhook, a Microsoft Teams
    workflow webhook, a JSON webhook signed with HMAC-SHA256, or the commit statuses of
    the revision a run applied on GitHub or GitLab."""

    type: Literal["slack", "teams", "webhook", "github", "gitlab"]
    url: Value | None = None
    """The webhook's URL (slack, teams, webhook: a secret, so `${env:...}`); for github
    and gitlab, the API (default https://api.github.com, https://gitlab.com)."""
    secret: Value | None = None
    """webhook: the HMAC-SHA256 key of the X-Reconciler-Signature-256 header."""
    token: Value | None = None
    """github, gitlab: a token that may write commit statuses."""
    repository: str | None = None
    """github: owner/name; gitlab: the project's path (group/project) or id."""
    events: list[NotificationEvent] = Field(default_factory=lambda: list(NOTIFICATION_EVENTS))
    """Which events (not for commit statuses: they follow every applying run)."""
    context: str = "reconciler"
    """github, gitlab: the status's context (name), one per serve."""

    @model_validator(mode="after")
    def _complete(self) -> Sink:
        if self.type in ("slack", "teams", "webhook") and self.url is None:
            raise ValueError(f"a {self.type} notification needs its url (a ${{env:...}})")
        if self.type == "webhook" and self.secret is None:
            raise ValueError("a webhook notification needs a secret to sign with")
        if self.type in ("github", "gitlab") and (self.token is None or not self.repository):
            raise ValueError(f"{self.type} commit statuses need a token and a repository")
        if (
            self.url is not None
            and isinstance(self.url, str)
            and not self.url.startswith(("https://", "http://"))
        ):
            raise ValueError(f"'{self.url}' is not an http(s) URL")
        return self


class Notifications(Model):
    link: str | None = None
    """The web UI's address as people reach it (https://reconciler.example.com): the
    links in notifications and commit statuses point there."""
    sinks: list[Sink] = Field(default_factory=list)


class Config(Model):
    manifests: list[str] = Field(default_factory=lambda: ["."])
    """Folders (searched for *.yaml and *.yml) or globs, relative to this file."""
    files: Files = Field(default_factory=Files)
    state: str = DEFAULT_STATE
    prune: bool = False
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    """Name to target; each validated by its provider's model (see `catalog`)."""
    profiles: dict[str, Profile] = Field(default_factory=dict)
    notifications: Notifications = Field(default_factory=Notifications)
    """What `serve` tells people, and where (README: Notifications)."""


@dataclass(frozen=True)
class Settings:
    """The configuration in force for one run: the file, with a profile applied."""

    manifests: tuple[str, ...]
    state: str
    prune: bool
    targets: dict[str, TargetConfig]
    select: tuple[str, ...]
    patches: tuple[PatchRule, ...]
    profile: str | None
    files: FileAccess | None = None
    """Where `${file:...}` may read (None: the manifests folder alone)."""
    notifications: Notifications = field(default_factory=Notifications)


def profile_chain(profiles: dict[str, Profile], name: str) -> list[str] | list[list[str]]:
    """Ancestors first, `name` last; or, when `extends` loops, the list of cycles found."""
    order: list[str] = []
    cycles: list[list[str]] = []

    def visit(current: str, trail: list[str]) -> None:
        if current in trail:
            cycles.append([*trail[trail.index(current) :], current])
            return
        if current in order:
            return
        for parent in profiles[current].extends:
            if parent in profiles:
                visit(parent, [*trail, current])
        order.append(current)

    visit(name, [])
    return cycles if cycles else order


def configuration_changes(trusted: Settings, proposed: Settings) -> list[str]:
    """What `proposed` changes of the settings that decide where credentials and state
    go: each target (URL, TLS, timeout aside, auth as written: `${env:...}` compared as
    written, never read), the state URL, the folders `${file:...}` may read, and the
    notifications."""
    changes = []

    def shown(target: TargetConfig) -> dict[str, Any]:
        data = target.model_dump(mode="json", context={"expressions": True})
        return {k: v for k, v in data.items() if k not in ("timeout", "retries")}

    for name in sorted(trusted.targets.keys() | proposed.targets.keys()):
        before, after = trusted.targets.get(name), proposed.targets.get(name)
        if before is None:
            changes.append(f"adds target '{name}'")
        elif after is None:
            changes.append(f"removes target '{name}'")
        else:
            old, new = shown(before), shown(after)
            fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if fields:
                changes.append(f"changes target '{name}' ({', '.join(fields)})")
    if trusted.state != proposed.state:
        changes.append("changes the state URL")
    if _file_policy(trusted) != _file_policy(proposed):
        changes.append("changes which files ${file:...} may read")

    # A sink's URL with a token beside it is where that token is sent.
    def sinks(settings: Settings) -> dict[str, Any]:
        return settings.notifications.model_dump(mode="json", context={"expressions": True})

    if sinks(trusted) != sinks(proposed):
        changes.append("changes the notifications (where tokens and reports are sent)")
    return changes


def _file_policy(settings: Settings) -> tuple[tuple[str, ...], int] | None:
    files = settings.files
    if files is None:
        return None
    allowed = tuple(
        str(p.relative_to(files.root)) if p.is_relative_to(files.root) else str(p)
        for p in files.allowed
    )
    return allowed, files.max_bytes
