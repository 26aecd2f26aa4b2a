"""The Pachyderm provider: observes a pachd with a few list calls (and the defaults: one
read for the cluster, one per project with pipelines) and applies actions to it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from reconciler.diff import Change, equal
from reconciler.errors import OperationalError, PermanentError, RetryableError
from reconciler.manifests import Resource, ResourceId
from reconciler.manifests.values import Sensitive
from reconciler.providers.base import (
    Applied,
    Check,
    Desired,
    Health,
    Observation,
    Observed,
)
from reconciler.providers.http import HttpError
from reconciler.providers.pachyderm.answers import embedded
from reconciler.providers.pachyderm.canonical import (
    DEFAULT_PROJECT,
    canonical,
    cron_repos,
    input_repos,
    secret_names,
    with_defaults,
)
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.providers.pachyderm.defaults import effective, json_names, request_part
from reconciler.providers.pachyderm.kinds import (
    CLUSTER_DEFAULTS_NAME,
    DefaultsSpec,
    PipelineSpec,
    SecretSpec,
)
from reconciler.providers.pachyderm.pipeline_rules import OURS, create_pipeline_request
from reconciler.providers.pachyderm.policies import (
    DEFAULTS_DIFF,
    DEFAULTS_KINDS,
    OUT_OF_BAND,
    PachydermPolicies,
    restarts,
)

STARTING_STATES = frozenset({"PIPELINE_STARTING", "PIPELINE_RESTARTING", ""})
FAILED_STATES = frozenset({"PIPELINE_CRASHING", "PIPELINE_FAILURE"})
DEFAULTS_USERS = frozenset({"Pipeline", "ClusterDefaults", "ProjectDefaults"})
LISTS = frozenset({"projects", "repos", "secrets", "pipelines", "defaults"})
"""What an observation reads: ListProject, ListRepo, ListSecret (and InspectSecret),
ListPipeline, and the defaults (the cluster's, then each project's)."""
TOUCHES = {
    "Project": frozenset({"projects", "defaults"}),
    "Repo": frozenset({"repos"}),
    "Secret": frozenset({"secrets"}),
    # A pipeline's output, spec and meta repos come and go with it (pps api_server.go:
    # CreatePipelineInTransaction makes them, deletePipelineInTransaction deletes them).
    "Pipeline": frozenset({"pipelines", "repos"}),
    # New defaults change what pipelines run as, and may restart them (regenerate).
    "ClusterDefaults": frozenset({"defaults", "pipelines"}),
    "ProjectDefaults": frozenset({"defaults", "pipelines"}),
}
"""The lists a call on each kind may change."""


def pipeline_health(state: str, reason: str) -> Health:
    """A pipeline's health from its state (pps.proto, PipelineState): RUNNING, and STANDBY
    (nothing to process), and PAUSED (stopped on purpose, spec.stopped) are healthy;
    STARTING and RESTARTING (backing off after an error) progress; CRASHING (workers
    failing to come up) and FAILURE (no longer retried) are degraded, with pachd's
    reason."""
    if state in ("PIPELINE_RUNNING", "PIPELINE_STANDBY", "PIPELINE_PAUSED"):
        return Health("healthy", "paused" if state == "PIPELINE_PAUSED" else "")
    if state in ("PIPELINE_STARTING", "PIPELINE_RESTARTING"):
        return Health("progressing", reason or state.removeprefix("PIPELINE_").lower())
    if state in FAILED_STATES:
        return Health("degraded", reason or state.removeprefix("PIPELINE_").lower())
    return Health("unknown", f"pachd reports state {state or 'none'}")


class PachydermProvider(PachydermPolicies):
    """Implements `reconciler.providers.base.Provider` for one pachd."""

    def __init__(
        self,
        target: str,
        client: PachdClient,
        projects: frozenset[str] = frozenset(),
        *,
        secrets: frozenset[str] = frozenset(),
        defaults: Sequence[Resource] = (),
        pipelines: frozenset[ResourceId] = frozenset(),
        scopes: frozenset[str] = frozenset(),
        start_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self.client = client
        self._start_timeout = start_timeout
        self._clock = clock
        self._secrets = secrets
        """Secrets the manifests name: looked up when ListSecret does not show them."""
        self._defaults = tuple(defaults)
        """ClusterDefaults and ProjectDefaults manifests: what changing them would restart
        is asked of pachd (dryRun) when they differ from the target's."""
        self._pipelines = pipelines
        self._projects = projects
        """Projects the manifests put pipelines in: their defaults are read."""
        self._scopes = scopes | projects
        """Projects the manifests or the inventory name, and those the manifests'
        pipelines read from: what this source observes. Their projects, repos and
        pipelines are listed, their defaults read (and so compared, pruned); other
        projects' are not (on a cluster shared by many sources, every run of every
        source would read, compare, report and publish all of them)."""
        self._reads_defaults = bool(projects or pipelines or self._defaults)
        """Defaults shape pipelines alone: a source with no pipeline and no defaults, in
        its manifests or its inventory, does not read them (two reads each observation)."""
        self._reads_secrets = bool(secrets)
        """Secrets belong to no project: ListSecret shows every secret of the cluster. A
        source reads them only when its manifests name or use one, or it owns one (its
        inventory, a killed run's create): one read fewer each observation for the
        others, which neither compare, prune nor report other teams' secrets."""
        self._cluster_defaults: dict[str, Any] = {}
        self._project_defaults: dict[str, dict[str, Any]] = {}
        self._lists: dict[str, list[dict[str, Any]]] = {}
        """pachd's answers to the last `observe`'s lists, by name (`LISTS`)."""
        self._inspected: dict[str, dict[str, Any]] = {}
        """Secrets the manifests name that ListSecret did not show, as InspectSecret did."""
        self._basis: tuple[frozenset[str], bool, bool] | None = None
        """What the last `observe` read for (its scopes, whether defaults and secrets were
        read), once every read answered; None: read everything next time."""
        self._stale: set[str] = set()
        """The lists this provider's own calls may have changed since the last `observe`.
        Only they are read again by the next in the same session (the refresh after an
        apply, still under the targets' locks): a repo's new description is one ListRepo,
        not every list. Providers live for one session, so every run reads everything
        first (see `Provider.observe`)."""
        self._versions: dict[ResourceId, int] = {}
        """Each pipeline's `version` (pachd bumps it on every update) as last observed."""
        self._sent: set[ResourceId] = set()
        """Projects, repos and pipelines this session sent a create or update for: sending
        one again (a retry of its action, after a lost answer or a failed wait) looks
        first whether the first landed (`_describe`, `_send_pipeline`)."""

    @property
    def target(self) -> str:
        return self._target

    # --- desired -----------------------------------------------------------------------

    def desire(self, resource: Resource) -> Desired:
        model = resource.spec
        if isinstance(model, SecretSpec):
            spec: dict[str, Any] = {"type": model.type or "Opaque"}
            if model.data:
                spec["data"] = dict(model.data)
            return Desired(resource, spec)
        if isinstance(model, DefaultsSpec):
            return Desired(resource, _defaults_spec(model))
        if not isinstance(model, PipelineSpec):
            return Desired(resource, canonical(model.spec_data()))
        project, name = _split(resource.id)
        # pachd's own fields as the request carries them (one dump of the model); the
        # fields that are ours are read from the model and never sent.
        request = {k: v for k, v in model.spec_data().items() if k not in OURS}
        ours = {
            key: True
            for key, value in (
                ("stopped", model.stopped),
                ("reprocessOnUpdate", model.reprocess_on_update),
            )
            if value
        }
        return Desired(resource, {**self._runs(request, project, name), **ours})

    def _runs(self, spec: Mapping[str, Any], project: str, name: str) -> dict[str, Any]:
        """What a pipeline with this user spec runs as, under the target's current
        defaults (observed): the form both sides are compared in."""
        merged = effective(self._cluster_defaults, self._project_defaults.get(project, {}), spec)
        merged.pop("pipeline", None)
        return with_defaults(canonical(merged), project, name)

    # --- observed ----------------------------------------------------------------------

    def expect(self, owned: frozenset[ResourceId]) -> None:
        """The projects what reconciler owns here lives in are observed too: what left
        the manifests is still seen, so pruned (an owned ProjectDefaults by emptying
        it), and never forgotten as gone."""
        if any(rid.kind in DEFAULTS_USERS for rid in owned):
            self._reads_defaults = True
        if any(rid.kind == "Secret" for rid in owned):
            self._reads_secrets = True
        self._scopes = self._scopes | {
            rid.name if rid.kind in ("Project", "ProjectDefaults") else _split(rid)[0]
            for rid in owned
            if rid.kind in ("Project", "ProjectDefaults", "Repo", "Pipeline")
        }

    async def observe(self) -> Observation:
        """What this source's projects hold (see `_scopes`), the pipelines anywhere that
        use it, and the cluster's secrets when it names, uses or owns one (see
        `_reads_secrets`): not every project of a cluster shared by many sources (each run
        of each would read, compare and report all of them)."""
        scopes = self._scopes
        basis = (scopes, self._reads_defaults, self._reads_secrets)
        stale = self._stale if basis == self._basis else LISTS
        self._basis = None  # until every read below has answered
        readers = {
            "projects": self._read_projects,
            "repos": self._read_repos,
            "pipelines": self._read_pipelines,
            "secrets": self._read_secrets,
            "defaults": self._read_defaults,
        }
        await asyncio.gather(*(read() for name, read in readers.items() if name in stale))
        projects, repos, pipelines = (self._lists[n] for n in ("projects", "repos", "pipelines"))
        if "defaults" in stale:
            existing = {str((p.get("project") or {}).get("name") or "") for p in projects}
            read = sorted(existing & scopes) if self._reads_defaults else []
            answers = await asyncio.gather(*(self.client.project_defaults(p) for p in read))
            self._project_defaults = {
                p: request_part(a) for p, a in zip(read, answers, strict=True)
            }
        self._basis, self._stale = basis, set()
        found: dict[ResourceId, Observed] = {}
        for info in projects:
            name = str((info.get("project") or {}).get("name") or "")
            if name not in scopes:
                continue  # ListProject has no filter (pfs.proto ListProjectRequest)
            rid = ResourceId(self._target, "Project", name)
            found[rid] = Observed(rid, canonical({"description": info.get("description")}))
        found.update(await self._observed_defaults())
        for info in self._lists["secrets"]:
            name = str((info.get("secret") or {}).get("name") or "")
            rid = ResourceId(self._target, "Secret", name)
            found[rid] = Observed(rid, {"type": info.get("type") or "Opaque"})
        for name, info in self._inspected.items():
            # ListSecret shows only secrets made through pachd (label secret-source=
            # pachyderm-user, api_server.go ListSecret); this one exists all the same.
            rid = ResourceId(self._target, "Secret", name)
            found[rid] = Observed(rid, {"type": info.get("type") or "Opaque"}, status=OUT_OF_BAND)
        made_by_pachd: set[tuple[str, str]] = set()
        pipeline_names: set[tuple[str, str]] = set()
        self._versions = {}
        for info in pipelines:
            observed = self._pipeline(info)
            version = _version(info.get("version"))
            if version is not None:
                self._versions[observed.id] = version
            project, name = _split(observed.id)
            pipeline_names.add((project, name))
            made_by_pachd.add((project, name))
            made_by_pachd.update((project, cron) for cron in cron_repos(observed.spec, name))
            found[observed.id] = observed
        for info in repos:
            project, name, repo_type = _repo_key(info.get("repo") or {})
            if (project, name) in made_by_pachd or repo_type != "user":
                continue  # output and cron repos belong to their pipeline
            if project not in scopes:
                continue  # a gateway that ignored the filter
            rid = ResourceId(self._target, "Repo", f"{project}/{name}")
            spec = canonical({"description": info.get("description")})
            found[rid] = Observed(rid, spec, tuple(self._project_use(project)))
        for rid, observed in list(found.items()):
            if rid.kind == "Pipeline":
                uses = tuple(self._pipeline_uses(observed, pipeline_names))
                if _split(rid)[0] in scopes or any(self._ours(used, scopes) for used in uses):
                    found[rid] = replace(observed, depends_on=uses)
                else:
                    del found[rid]  # another source's, using nothing of this one
        return Observation(self._target, found)

    def _ours(self, used: ResourceId, scopes: frozenset[str]) -> bool:
        """What a pipeline elsewhere uses that this source may own: a repo or pipeline in
        one of its projects, or a secret when it reads them (secrets belong to no
        project). Such a user stays in the observation: it keeps what it uses from being
        deleted."""
        if used.kind == "Secret":
            return self._reads_secrets
        return (used.name if used.kind == "Project" else _split(used)[0]) in scopes

    async def _read_projects(self) -> None:
        self._lists["projects"] = await self.client.list_projects()

    async def _read_repos(self) -> None:
        self._lists["repos"] = await self.client.list_repos(sorted(self._scopes))

    async def _read_pipelines(self) -> None:
        self._lists["pipelines"] = await self.client.list_pipelines()

    async def _read_secrets(self) -> None:
        listed = await self.client.list_secrets() if self._reads_secrets else []
        names = {str((info.get("secret") or {}).get("name") or "") for info in listed}
        unlisted = sorted(self._secrets - names)
        inspected = await asyncio.gather(*(self.client.inspect_secret(n) for n in unlisted))
        self._lists["secrets"] = listed
        self._inspected = {
            name: info for name, info in zip(unlisted, inspected, strict=True) if info is not None
        }

    async def _read_defaults(self) -> None:
        """The cluster's (the projects' follow the project list they need)."""
        cluster = await self.client.cluster_defaults() if self._reads_defaults else None
        self._cluster_defaults = request_part(cluster) if cluster is not None else {}

    def _touch(self, kind: str) -> None:
        """A call on `kind` is about to be sent: what it may change is read again by the
        next `observe` (the refresh after an apply), even if the call fails."""
        self._stale |= TOUCHES.get(kind, LISTS)

    def _pipeline(self, info: Mapping[str, Any]) -> Observed:
        pipeline = info.get("pipeline") or {}
        project = str((pipeline.get("project") or {}).get("name") or DEFAULT_PROJECT)
        name = str(pipeline.get("name") or "")
        # The spec as last sent, under today's defaults: compared with the manifest under
        # the same defaults (`defaults.py`). A pipeline without a user spec (made before
        # 2.8) falls back to what runs.
        raw = info.get("userSpecJson") or info.get("effectiveSpecJson") or "{}"
        try:
            spec = embedded(raw, f"pipeline {project}/{name} with a spec")
        except json.JSONDecodeError:
            raise PermanentError(
                f"pachd sent pipeline {project}/{name} with a spec that is not JSON"
            ) from None
        if not isinstance(spec, dict):
            raise PermanentError(f"pachd sent pipeline {project}/{name} without a spec")
        normal = self._runs(spec, project, name)
        if info.get("stopped"):
            normal["stopped"] = True
        rid = ResourceId(self._target, "Pipeline", f"{project}/{name}")
        state = str(info.get("state") or "")
        reason = str(info.get("reason") or "")
        return Observed(
            rid,
            normal,
            status=f"{state}: {reason}" if reason else state or None,
            health=pipeline_health(state, reason),
        )

    async def _observed_defaults(self) -> dict[ResourceId, Observed]:
        """The cluster's and every project's defaults; for each defaults manifest that
        differs from them, the pipelines the change would restart (pachd's dryRun)."""
        if not self._reads_defaults:
            return {}
        current = {
            ResourceId(self._target, "ClusterDefaults", CLUSTER_DEFAULTS_NAME): (
                self._cluster_defaults
            ),
            **{
                ResourceId(self._target, "ProjectDefaults", project): defaults
                for project, defaults in self._project_defaults.items()
            },
        }
        observed = {
            rid: {"createPipelineRequest": canonical(defaults)} for rid, defaults in current.items()
        }
        changing = [
            r
            for r in self._defaults
            if r.id in observed
            and not equal(_defaults_spec(cast(DefaultsSpec, r.spec)), observed[r.id], DEFAULTS_DIFF)
        ]
        asked = await asyncio.gather(
            *(
                self.client.set_defaults(
                    None if r.kind == "ClusterDefaults" else r.name,
                    _defaults_request(r),
                    regenerate=True,
                    reprocess=False,
                    dry_run=True,
                )
                for r in changing
            )
        )
        affects = {
            r.id: tuple(ResourceId(self._target, "Pipeline", f"{p}/{n}") for p, n in answer)
            for r, answer in zip(changing, asked, strict=True)
        }
        return {
            rid: Observed(rid, spec, affects=affects.get(rid)) for rid, spec in observed.items()
        }

    @property
    def managed_pipelines(self) -> frozenset[ResourceId]:
        return self._pipelines

    def _project_use(self, project: str) -> list[ResourceId]:
        if project == DEFAULT_PROJECT:
            return []
        return [ResourceId(self._target, "Project", project)]

    def _pipeline_uses(
        self, observed: Observed, pipelines: set[tuple[str, str]]
    ) -> list[ResourceId]:
        project, _ = _split(observed.id)
        uses = self._project_use(project)
        for repo_project, repo in input_repos(observed.spec, project):
            kind = "Pipeline" if (repo_project, repo) in pipelines else "Repo"
            uses.append(ResourceId(self._target, kind, f"{repo_project}/{repo}"))
        uses += [ResourceId(self._target, "Secret", s) for s in secret_names(observed.spec)]
        return list(dict.fromkeys(uses))

    # --- actions -----------------------------------------------------------------------

    async def _describe(self, desired: Desired, *, update: bool) -> None:
        """Create a Project or Repo, or (update) change its description: all they hold.
        A create tried again after a try whose answer was lost looks first: pachd refuses
        a second one (AlreadyExists), and one with this name and description, which the
        observation did not show, is the try before's."""
        description = str(desired.spec.get("description") or "")
        if not update and desired.id in self._sent and await self._described(desired):
            return
        self._sent.add(desired.id)
        if desired.id.kind == "Project":
            await self.client.create_project(desired.id.name, description, update=update)
        else:
            project, name = _split(desired.id)
            await self.client.create_repo(project, name, description, update=update)

    async def _described(self, desired: Desired) -> bool:
        """Whether pachd holds this Project or user Repo with the wanted description."""
        if desired.id.kind == "Project":
            listed = await self.client.list_projects()
            found = [i for i in listed if (i.get("project") or {}).get("name") == desired.id.name]
        else:
            project, name = _split(desired.id)
            found = [
                info
                for info in await self.client.list_repos([project])
                if _repo_key(info.get("repo") or {}) == (project, name, "user")
            ]
        wanted = str(desired.spec.get("description") or "")
        return any(str(i.get("description") or "") == wanted for i in found)

    async def _set_defaults(self, desired: Desired) -> None:
        resource = desired.resource
        await self.client.set_defaults(
            None if resource.kind == "ClusterDefaults" else resource.name,
            _defaults_request(resource),
            regenerate=bool(desired.spec.get("regenerate")),
            reprocess=bool(desired.spec.get("reprocess")),
        )

    async def create(self, desired: Desired) -> None:
        kind, spec = desired.id.kind, desired.spec
        self._touch(kind)
        if kind in DEFAULTS_KINDS:
            await self._set_defaults(desired)
        elif kind in ("Project", "Repo"):
            await self._describe(desired, update=False)
        elif kind == "Secret":
            data = {key: _clear(value) for key, value in (spec.get("data") or {}).items()}
            await self.client.create_secret(desired.id.name, str(spec["type"]), data)
        else:
            project, name = _split(desired.id)
            await self._send_pipeline(desired, update=False, reprocess=False)
            if spec.get("stopped"):
                await self.client.stop_pipeline(project, name)
            else:
                await self._started(project, name)

    async def patch(self, desired: Desired, observed: Observed, changes: Sequence[Change]) -> None:
        kind, spec = desired.id.kind, desired.spec
        self._touch(kind)
        if kind in DEFAULTS_KINDS:
            await self._set_defaults(desired)
        elif kind in ("Project", "Repo"):
            await self._describe(desired, update=True)
        elif kind == "Pipeline":
            project, name = _split(desired.id)
            if restarts(changes):
                await self._send_pipeline(
                    desired, update=True, reprocess=bool(spec.get("reprocessOnUpdate"))
                )
            stopped = bool(spec.get("stopped"))
            if stopped != bool(observed.spec.get("stopped")):
                if stopped:
                    await self.client.stop_pipeline(project, name)
                else:
                    await self.client.start_pipeline(project, name)
            if not stopped:
                await self._started(project, name)
        else:
            raise PermanentError(f"{desired.id}: a {kind} is never patched in place")

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None:
        if desired.id.kind != "Pipeline":
            raise PermanentError(f"{desired.id}: a {desired.id.kind} has nothing to restart")
        self._touch("Pipeline")
        # An update with the same spec is how pachd restarts a pipeline's workers.
        await self._send_pipeline(desired, update=True, reprocess=False)
        if not desired.spec.get("stopped"):
            await self._started(*_split(desired.id))

    async def _send_pipeline(self, desired: Desired, *, update: bool, reprocess: bool) -> None:
        """CreatePipelineV2, sent again (a retry) only if the try before did not land.
        pachd restarts a pipeline on every update, even with the same spec, and refuses a
        second create (NOTES: AlreadyExists); an answer lost on the way would otherwise
        cost a second restart, or fail a create that was made. It landed when pachd
        holds a version newer than observed (or the pipeline, for a create) whose
        `userSpecJson`, the request exactly as sent, is this one (pps/server
        api_server.go: createPipeline keeps `UserJson: req.CreatePipelineRequestJson`;
        initializePipelineInfo sets `Version = oldPipelineInfo.Version + 1` on every
        update)."""
        request = self._request(desired)
        rid = desired.id
        if rid in self._sent and await self._landed(rid, request):
            return
        self._sent.add(rid)
        await self.client.create_pipeline(request, update=update, reprocess=reprocess)

    async def _landed(self, rid: ResourceId, request: Mapping[str, Any]) -> bool:
        info = await self.client.find_pipeline(*_split(rid))
        if info is None:
            return False
        try:
            sent = embedded(str(info.get("userSpecJson") or "null"), "a pipeline spec")
        except (json.JSONDecodeError, PermanentError):
            return False
        before = self._versions.get(rid)
        version = _version(info.get("version"))
        newer = before is None or (version is not None and version > before)
        return newer and sent == json.loads(json.dumps(request))

    async def _started(self, project: str, name: str) -> None:
        """Wait (bounded by `start_timeout`) until a created or updated pipeline leaves
        PIPELINE_STARTING; CRASHING or FAILURE fail the action with pachd's reason, so
        that what depends on it is skipped (NOTES: a pipeline that cannot run says so in
        `PipelineInfo.state` and `reason`)."""
        deadline = self._clock() + self._start_timeout
        pause = 0.05
        while True:
            info = await self.client.inspect_pipeline(project, name)
            state = str(info.get("state") or "")
            # The pipeline was made: a create that fails here did happen (refused=False).
            if state in FAILED_STATES:
                reason = str(info.get("reason") or "no reason given")
                raise PermanentError(
                    f"pipeline {project}/{name} is {state}: {reason}", refused=False
                )
            if state not in STARTING_STATES:
                return
            if self._clock() >= deadline:
                raise PermanentError(
                    f"pipeline {project}/{name} is still {state} after"
                    f" {self._start_timeout:g}s (startTimeout): see `pachctl inspect pipeline`",
                    refused=False,
                )
            await asyncio.sleep(min(pause, max(0.0, deadline - self._clock())))
            pause = min(pause * 2, 2.0)

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        self._touch(rid.kind)
        if rid.kind in DEFAULTS_KINDS:
            # Defaults cannot be removed, only emptied: pipelines keep their effective
            # spec until their next update (no regenerate).
            project = None if rid.kind == "ClusterDefaults" else rid.name
            await self.client.set_defaults(project, {}, regenerate=False, reprocess=False)
        elif rid.kind == "Project":
            await self.client.delete_project(rid.name)
        elif rid.kind == "Repo":
            await self.client.delete_repo(*_split(rid))
        elif rid.kind == "Secret":
            await self.client.delete_secret(rid.name)
        else:
            # The output repo and its data go with the pipeline: deletionPolicy Delete.
            await self.client.delete_pipeline(*_split(rid))

    async def diagnose(self) -> list[Check]:
        try:
            await self.client.list_projects()
        except RetryableError as exc:
            return [Check("reachable", False, str(exc))]
        except HttpError as exc:
            refused = exc.status in (401, 403) or exc.code in (7, 16)
            return [
                Check("reachable", True, "pachd answered"),
                Check("authenticated", not refused, str(exc)),
            ]
        except OperationalError as exc:
            return [Check("reachable", False, str(exc))]
        return [
            Check("reachable", True, "pachd answered"),
            Check("authenticated", True, "ListProject answered"),
        ]

    async def aclose(self) -> None:
        await self.client.aclose()

    def _request(self, desired: Desired) -> dict[str, Any]:
        """The manifest's spec as written (pachd fills in its own defaults)."""
        project, name = _split(desired.id)
        spec = _clear(desired.model.spec_data())
        return create_pipeline_request(spec, project, name)


def _defaults_spec(model: DefaultsSpec) -> dict[str, Any]:
    """A defaults manifest's spec in the form compared with the target's."""
    request = json_names(model.create_pipeline_request.spec_data())
    spec: dict[str, Any] = {"createPipelineRequest": canonical(request)}
    if model.regenerate:
        spec["regenerate"] = True
    if model.reprocess:
        spec["reprocess"] = True
    return spec


def _defaults_request(resource: Resource) -> dict[str, Any]:
    """The ClusterDefaults / ProjectDefaults message to send, references revealed."""
    model = cast(DefaultsSpec, resource.spec)
    return {"createPipelineRequest": _clear(model.create_pipeline_request.spec_data())}


def _split(rid: ResourceId) -> tuple[str, str]:
    project, _, name = rid.name.partition("/")
    return project, name


def _clear(value: Any) -> Any:
    """`value` with sensitive values revealed: only ever for a request body."""
    if isinstance(value, Sensitive):
        return value.reveal()
    if isinstance(value, Mapping):
        return {key: _clear(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clear(item) for item in value]
    return value


def _version(value: Any) -> int | None:
    """PipelineInfo.version, a uint64: a JSON string or number (protojson writes it as a
    string); None when it is neither."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _repo_key(repo: Mapping[str, Any]) -> tuple[str, str, str]:
    """A ListRepo entry's project, name and type (`user` when absent)."""
    project = str((repo.get("project") or {}).get("name") or DEFAULT_PROJECT)
    return project, str(repo.get("name") or ""), str(repo.get("type") or "user")
