"""An emulator of pachd's REST gateway: the projects, repos, secrets and pipelines RPCs.

Paths and bodies follow `pachyderm_api.swagger.json` (`POST /api/<package>.<Service>/
<Method>`, camelCase JSON, server streams as one `{"result": ...}` per line, int64 as
strings). Behaviour follows the facts in the reference NOTES: server defaults filled into
`effectiveSpecJson`, the server's validation and messages, `update` as upsert for repos
and pipelines but not projects, every pipeline update counted as a restart (upstream
issue #3092), output/spec/meta/cron repos made by the server, `DeleteRepo` answering
`deleted: false` for a missing repo, and pipelines refused when a secret they mount is
missing.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import fastjsonschema

from reconciler import schemas
from reconciler.providers.pachyderm.cron import cron_problem
from reconciler.sandbox.store import Store

if TYPE_CHECKING:
    from jsonschema import Draft7Validator

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,50}\Z")
DEFAULT_PROJECT = "default"


class GrpcError(Exception):
    """A refusal as pachd sends it: a gRPC code and a message."""

    def __init__(self, code: int, message: str, *, commit: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.commit = commit
        """What the call changed before it failed is kept (pachd commits some steps of a
        call in transactions of their own)."""


def refused(message: str) -> GrpcError:
    """Most of pachd's refusals are plain `errors.Errorf`, which its interceptor answers
    as gRPC Unknown (2): HTTP 500 through the gateway, with pachd's message."""
    return GrpcError(2, message)


def invalid(message: str) -> GrpcError:
    return GrpcError(3, message)


def not_found(message: str) -> GrpcError:
    return GrpcError(5, message)


def exists(message: str) -> GrpcError:
    return GrpcError(6, message)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _project_name(message: dict[str, Any] | None) -> str:
    return str(((message or {}).get("project") or {}).get("name") or DEFAULT_PROJECT)


@cache
def _pipeline_check() -> Callable[[Any], Any]:
    return fastjsonschema.compile(
        schemas.load(schemas.CREATE_PIPELINE_REQUEST), detailed_exceptions=False
    )


def _pipeline_accepts(request: Any) -> bool:
    """The compiled schema's quick yes; jsonschema only to say what is wrong."""
    try:
        _pipeline_check()(request)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


@cache
def _pipeline_schema() -> Draft7Validator:
    from jsonschema import Draft7Validator  # here: a plan never creates, so never needs it

    return Draft7Validator(schemas.load(schemas.CREATE_PIPELINE_REQUEST))


SYNTHESIZED_DEFAULTS = json.dumps(
    # src/internal/clusterstate/v2.8.0/defaults.go, synthesizeClusterDefaults: every
    # install from 2.8 on starts with these cluster defaults (protojson of ClusterDefaults).
    {
        "createPipelineRequest": {
            "resourceRequests": {"cpu": 1, "memory": "256Mi", "disk": "1Gi"},
            "sidecarResourceRequests": {"cpu": 1, "memory": "256Mi", "disk": "1Gi"},
        }
    }
)
BUILT_IN_DEFAULTS = {
    # src/server/pps/server/defaults.go, builtInDefaults (protojson: int64 as a string).
    "createPipelineRequest": {
        "transform": {"image": "ubuntu:20.04"},
        "outputBranch": "master",
        "datumTries": "3",
        "reprocessSpec": "until_success",
    }
}


@dataclass(frozen=True)
class PachydermOptions:
    cluster_defaults: str | None = SYNTHESIZED_DEFAULTS
    """The cluster defaults a new sandbox starts with (JSON of a ClusterDefaults), as
    every 2.8+ install has them; None: never set (GetClusterDefaults answers `{}`)."""
    start_delay: float = 0.05
    """Seconds a created or updated pipeline stays PIPELINE_STARTING."""
    crash_images: frozenset[str] = frozenset()
    """Images whose pipelines go PIPELINE_CRASHING instead of running (for tests)."""
    kube_secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Secrets made out of band (kubectl, Helm): name to keys. ListSecret hides them."""


# The gateway marshals answers with EmitUnpopulated (pachyderm_api.swagger.json, the
# *Info definitions): every field is present, unset ones as their zero value (null for a
# message, the first name of an enum, "0" for 64-bit integers).
UNPOPULATED: dict[str, dict[str, Any]] = {
    "PipelineInfo": {
        "pipeline": None,
        "version": "0",
        "specCommit": None,
        "stopped": False,
        "state": "PIPELINE_STATE_UNKNOWN",
        "reason": "",
        "lastJobState": "JOB_STATE_UNKNOWN",
        "parallelism": "0",
        "type": "PIPELINT_TYPE_UNKNOWN",
        "authToken": "",
        "details": None,
        "userSpecJson": "",
        "effectiveSpecJson": "",
        "metadata": {},
    },
    "ProjectInfo": {
        "project": None,
        "description": "",
        "authInfo": None,
        "createdAt": None,
        "metadata": {},
        "createdBy": "",
    },
    "RepoInfo": {
        "repo": None,
        "created": None,
        "sizeBytesUpperBound": "0",
        "description": "",
        "branches": [],
        "authInfo": None,
        "details": None,
        "metadata": {},
    },
    "SecretInfo": {"secret": None, "type": "", "creationTimestamp": None},
}


def emitted(message: str, value: dict[str, Any]) -> dict[str, Any]:
    """`value` as the gateway writes a `message`: every field, unset ones as zero."""
    return {**UNPOPULATED[message], **value}


class Pachd:
    """The state and the RPCs; every method runs inside one store transaction."""

    def __init__(
        self,
        store: Store,
        options: PachydermOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.options = options or PachydermOptions()
        self.clock = clock
        with store.transaction():
            if store.get("defaults", "cluster") is None:
                stored = self.options.cluster_defaults
                store.put("defaults", "cluster", {"json": stored or "{}"})
            for name, keys in self.options.kube_secrets.items():
                if store.get("secret", name) is None:
                    store.put(
                        "secret",
                        name,
                        {
                            "secret": {"name": name},
                            "type": "Opaque",
                            "creationTimestamp": _now(),
                            "data": dict.fromkeys(keys, ""),
                            "stringData": {},
                            "outOfBand": True,
                        },
                    )

    # --- projects ----------------------------------------------------------------------

    def _projects(self) -> dict[str, dict[str, Any]]:
        found = {p["project"]["name"]: p for p in self.store.all("project")}
        found.setdefault(
            DEFAULT_PROJECT,
            {"project": {"name": DEFAULT_PROJECT}, "description": "", "createdAt": _now()},
        )
        return found

    def _need_project(self, name: str) -> None:
        # One row, not every project: pachd looks a project up by its key too.
        if name != DEFAULT_PROJECT and self.store.get("project", name) is None:
            raise not_found(f"project {name} not found")

    def ListProject(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        projects = self._projects()
        return [emitted("ProjectInfo", projects[name]) for name in sorted(projects)]

    def CreateProject(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str((body.get("project") or {}).get("name") or "")
        if not NAME.match(name):
            raise invalid(f"invalid project name {name!r}")
        projects = self._projects()
        if body.get("update"):
            if name not in projects:
                raise not_found(f"project {name} not found")
            project = projects[name]
            project["description"] = body.get("description", "")
        else:
            if name in projects:
                raise exists(f"project {name} already exists")
            project = {
                "project": {"name": name},
                "description": body.get("description", ""),
                "createdAt": _now(),
            }
        self.store.put("project", name, project)
        return {}

    def DeleteProject(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _project_name(body)
        if name not in self._projects():
            raise not_found(f"project {name} not found")
        repos = [r for r in self.store.all("repo") if r["repo"]["project"]["name"] == name]
        if repos and not body.get("force"):
            first = repos[0]["repo"]["name"]
            raise GrpcError(9, f"cannot delete project {name}: repo {name}/{first} still exists")
        for repo in repos:
            self.store.delete("repo", _repo_key(repo["repo"]))
        self.store.delete("project", name)
        return {}

    # --- repos ----------------------------------------------------------------------

    def ListRepo(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        # pachd server_repo.go listRepoInTransaction, pfsdb/repos.go ForEachRepo: a blank
        # type lists every type; an empty `projects` list does not filter by project.
        wanted = body.get("type", "")
        projects = {p.get("name") for p in body.get("projects") or []}
        # The names go into pachd's SQL between quotes, unescaped: a quote in one breaks
        # the statement, and pachd answers with the database's error.
        if any("'" in str(name) for name in projects):
            raise GrpcError(2, "for each repo: syntax error at or near a quote in project.name IN")
        return [
            emitted("RepoInfo", r)
            for r in self.store.all("repo")
            if (not wanted or r["repo"]["type"] == wanted)
            and (not projects or r["repo"]["project"]["name"] in projects)
        ]

    def CreateRepo(self, body: dict[str, Any]) -> dict[str, Any]:
        repo = dict(body.get("repo") or {})
        name = str(repo.get("name") or "")
        project = _project_name(repo)
        if not NAME.match(name):
            raise invalid(f"invalid repo name {name!r}: only letters, digits, '_' and '-'")
        self._need_project(project)
        key = f"{project}/{name}/user"
        current = self.store.get("repo", key)
        if current is not None and not body.get("update"):
            raise exists(f"repo {project}/{name} already exists")
        if current is None:
            current = {
                "repo": {"name": name, "type": "user", "project": {"name": project}},
                "created": _now(),
                "sizeBytesUpperBound": "0",
                "branches": [],
                "description": "",
            }
        current["description"] = body.get("description", "")
        self.store.put("repo", key, current)
        return {}

    def DeleteRepo(self, body: dict[str, Any]) -> dict[str, Any]:
        repo = body.get("repo") or {}
        project = _project_name(repo)
        name = str(repo.get("name") or "")
        key = f"{project}/{name}/{repo.get('type') or 'user'}"
        if self.store.get("repo", key) is None:
            return {"deleted": False}
        if self.store.get("pipeline", f"{project}/{name}") is not None:
            raise GrpcError(
                9, "cannot delete a repo associated with a pipeline - delete the pipeline instead"
            )
        users = [
            p["pipeline"]["name"]
            for p in self.store.all("pipeline")
            if (project, name) in _input_repos(p["spec"], p["pipeline"]["project"]["name"])
        ]
        if users and not body.get("force"):
            raise GrpcError(
                9, f"cannot delete repo {project}/{name}: pipeline {users[0]} reads from it"
            )
        self.store.delete("repo", key)
        return {"deleted": True}

    # --- secrets --------------------------------------------------------------------

    def CreateSecret(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            manifest = json.loads(base64.b64decode(str(body.get("file") or ""), validate=True))
        except (binascii.Error, ValueError):
            raise invalid("cannot parse the secret: not a base64 JSON Kubernetes Secret") from None
        name = str((manifest.get("metadata") or {}).get("name") or "")
        if manifest.get("kind") != "Secret" or not name:
            raise invalid("cannot parse the secret: kind Secret with metadata.name expected")
        if self.store.get("secret", name) is not None:
            raise exists(f'secrets "{name}" already exists')
        self.store.put(
            "secret",
            name,
            {
                "secret": {"name": name},
                "type": manifest.get("type") or "Opaque",
                "creationTimestamp": _now(),
                "data": manifest.get("data") or {},
                "stringData": manifest.get("stringData") or {},
            },
        )
        return {}

    def DeleteSecret(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str((body.get("secret") or {}).get("name") or "")
        if not self.store.delete("secret", name):
            raise not_found(f'secrets "{name}" not found')
        return {}

    def _secret_info(self, secret: dict[str, Any]) -> dict[str, Any]:
        return emitted(
            "SecretInfo", {k: secret[k] for k in ("secret", "type", "creationTimestamp")}
        )

    def ListSecret(self, body: dict[str, Any]) -> dict[str, Any]:
        # api_server.go ListSecret: only secrets labelled secret-source=pachyderm-user,
        # i.e. made through CreateSecret; kubectl's or Helm's are not listed.
        return {
            "secretInfo": [
                self._secret_info(s) for s in self.store.all("secret") if not s.get("outOfBand")
            ]
        }

    def InspectSecret(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str((body.get("secret") or {}).get("name") or "")
        secret = self.store.get("secret", name)
        if secret is None:
            raise not_found(f'secrets "{name}" not found')
        return self._secret_info(secret)

    # --- pipelines ------------------------------------------------------------------

    def ListPipeline(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        projects = {p.get("name") for p in body.get("projects") or []}
        found = []
        for pipeline in self.store.all("pipeline"):
            if projects and pipeline["pipeline"]["project"]["name"] not in projects:
                continue
            found.append(self._info(pipeline, details=bool(body.get("details"))))
        return found

    def InspectPipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        pipeline = body.get("pipeline") or {}
        key = f"{_project_name(pipeline)}/{pipeline.get('name')}"
        current = self.store.get("pipeline", key)
        if current is None:
            raise not_found(f"pipeline {key} not found")
        return self._info(current, details=bool(body.get("details")))

    def _info(self, pipeline: dict[str, Any], *, details: bool) -> dict[str, Any]:
        """A PipelineInfo, its state as of now: STARTING for `start_delay` after a create
        or update, then RUNNING, or CRASHING with a reason (a crash image)."""
        info = emitted(
            "PipelineInfo", {k: v for k, v in pipeline.items() if k not in ("spec", "startedAt")}
        )
        if not details:
            info["details"] = None
        if not pipeline.get("stopped"):
            started = float(pipeline.get("startedAt") or 0)
            image = str(((pipeline.get("spec") or {}).get("transform") or {}).get("image"))
            if self.clock() - started < self.options.start_delay:
                info["state"], info["reason"] = "PIPELINE_STARTING", ""
            elif image in self.options.crash_images:
                info["state"] = "PIPELINE_CRASHING"
                info["reason"] = f'back-off pulling image "{image}": ImagePullBackOff'
            else:
                info["state"], info["reason"] = "PIPELINE_RUNNING", ""
        return info

    def CreatePipelineV2(self, body: dict[str, Any]) -> dict[str, Any]:
        user_json = str(body.get("createPipelineRequestJson") or "")
        try:
            request = json.loads(user_json)
        except json.JSONDecodeError as exc:
            raise refused(f"could not unmarshal {user_json!r} as JSON: {exc}") from None
        if not isinstance(request, dict):
            raise refused("could not unmarshal the create pipeline request: an object expected")
        pipeline = json_named(request).get("pipeline") or {}
        name = str(pipeline.get("name") or "")
        project = _project_name(pipeline)
        if not NAME.match(name):
            raise invalid(f"invalid pipeline name {name!r}")
        # api_server.go validatePipelineRequest with ppsutil.PipelineRcName at version 99:
        # <project>-<name>-v99, lower case, '_' as '-', within a DNS label (63).
        k8s_name = f"{project}-{name}-v99".replace("_", "-").lower()
        if len(k8s_name) > 63:
            raise refused(
                f"Kubernetes name {k8s_name!r} is {len(k8s_name) - 63} characters longer"
                " than the 63 max"
            )
        self._need_project(project)
        effective = self._effective(request, project)
        self._validate(effective, name, project)
        key = f"{project}/{name}"
        current = self.store.get("pipeline", key)
        update = bool(body.get("update"))
        if current is not None and not update:
            raise exists(f"pipeline {project}/{name} already exists")
        if current is None and self.store.get("repo", f"{project}/{name}/user") is not None:
            raise refused(
                f"cannot create pipeline {project}/{name}: repo {project}/{name} already exists"
            )
        effective_json = json.dumps(effective)
        if body.get("dryRun"):
            return {"effectiveCreatePipelineRequestJson": effective_json}
        self._save(key, name, project, user_json, effective, current)
        return {"effectiveCreatePipelineRequestJson": effective_json}

    def _effective(self, user: dict[str, Any], project: str) -> dict[str, Any]:
        """defaults.go, makeEffectiveSpec: built-in, cluster, project defaults, then the
        user's spec, each canonicalised to JSON names, merged by RFC 7396."""
        merged: Any = json_named(BUILT_IN_DEFAULTS)
        for layer in (self._cluster_json(), self._project_json(project)):
            merged = rfc7396(merged, json_named(_json_object(layer)))
        wrapped = rfc7396(merged, {"createPipelineRequest": json_named(user)})
        result = wrapped.get("createPipelineRequest") if isinstance(wrapped, dict) else None
        if not isinstance(result, dict):
            raise refused("missing createPipelineRequest in the effective spec")
        checked = _numbers(result)
        errors = (
            []
            if _pipeline_accepts(checked)
            else sorted(_pipeline_schema().iter_errors(checked), key=lambda e: list(e.path))
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].path)
            raise invalid(f"invalid effective spec at {where or '.'}: {errors[0].message}")
        return result

    def _save(
        self,
        key: str,
        name: str,
        project: str,
        user_json: str,
        effective: dict[str, Any],
        current: dict[str, Any] | None,
    ) -> None:
        spec = {k: v for k, v in effective.items() if k not in ("pipeline", "update", "reprocess")}
        with_inputs = copy.deepcopy(spec)
        _input_defaults(with_inputs.get("input") or {}, name, project)
        if isinstance(with_inputs.get("service"), dict):
            with_inputs["service"].setdefault("type", "NodePort")
        version = int(current["version"]) + 1 if current else 1
        stopped = bool((current or {}).get("stopped"))
        info = {
            "pipeline": {"name": name, "project": {"name": project}},
            "version": str(version),
            "state": "PIPELINE_PAUSED" if stopped else "PIPELINE_STARTING",
            "reason": "",
            "stopped": stopped,
            "type": "PIPELINE_TYPE_SERVICE"
            if "service" in spec
            else ("PIPELINE_TYPE_SPOUT" if "spout" in spec else "PIPELINE_TYPE_TRANSFORM"),
            "userSpecJson": user_json,
            "effectiveSpecJson": json.dumps(effective),
            "details": {**copy.deepcopy(with_inputs), "createdAt": _now()},
            "spec": with_inputs,
            "startedAt": self.clock(),
        }
        self.store.put("pipeline", key, info)
        for repo_name, kind in [
            (name, "user"),
            (name, "spec"),
            (name, "meta"),
            *((cron, "user") for cron in _cron_repos(with_inputs)),
        ]:
            repo_key = f"{project}/{repo_name}/{kind}"
            if self.store.get("repo", repo_key) is None:
                self.store.put(
                    "repo",
                    repo_key,
                    {
                        "repo": {"name": repo_name, "type": kind, "project": {"name": project}},
                        "created": _now(),
                        "sizeBytesUpperBound": "0",
                        "branches": [],
                        "description": f"Output repo for pipeline {project}/{name}."
                        if kind == "user"
                        else "",
                    },
                )
        if current is not None:
            # Every update restarts the workers and kills running jobs (#3092).
            self.store.count("restarts", f"Pipeline/{key}")

    # --- defaults ---------------------------------------------------------------------

    def _cluster_json(self) -> str:
        stored = self.store.get("defaults", "cluster")
        return str((stored or {}).get("json") or "{}")

    def _project_json(self, project: str) -> str:
        stored = self.store.get("defaults", f"project/{project}")
        return str((stored or {}).get("json") or "{}")

    def GetClusterDefaults(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"clusterDefaultsJson": self._cluster_json()}

    def GetProjectDefaults(self, body: dict[str, Any]) -> dict[str, Any]:
        project = _project_name(body)
        self._need_project(project)  # api_server.go GetProjectDefaults: InspectProject
        return {"projectDefaultsJson": self._project_json(project), "createdBy": ""}

    def SetClusterDefaults(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_defaults(body, "cluster", None, "clusterDefaultsJson")

    def SetProjectDefaults(self, body: dict[str, Any]) -> dict[str, Any]:
        project = _project_name(body)
        self._need_project(project)
        return self._set_defaults(body, f"project/{project}", project, "projectDefaultsJson")

    def _set_defaults(
        self, body: dict[str, Any], key: str, project: str | None, field_name: str
    ) -> dict[str, Any]:
        """api_server.go SetClusterDefaults / SetProjectDefaults: stored verbatim; with
        `regenerate`, every affected pipeline whose effective spec changes is updated
        (restarted); `dryRun` only answers which."""
        text = str(body.get(field_name) or "")
        data = _json_object(text)
        if not text or not isinstance(json_named(data).get("createPipelineRequest", {}), dict):
            raise invalid(f"invalid {field_name}")
        if body.get("reprocess") and not body.get("regenerate"):
            raise invalid("reprocess requires regenerate")
        before = self.store.get("defaults", key)
        self.store.put("defaults", key, {"json": text})
        affected: list[tuple[str, str, str, dict[str, Any]]] = []
        if body.get("regenerate"):
            for pipeline in self.store.all("pipeline"):
                where = pipeline["pipeline"]["project"]["name"]
                if project is not None and where != project:
                    continue
                user_json = str(pipeline.get("userSpecJson") or "{}")
                renewed = self._effective(_json_object(user_json), where)
                if renewed != json.loads(str(pipeline.get("effectiveSpecJson") or "{}")):
                    name = pipeline["pipeline"]["name"]
                    affected.append((where, name, user_json, renewed))
        if body.get("dryRun"):
            if before is None:
                self.store.delete("defaults", key)
            else:
                self.store.put("defaults", key, before)
        else:
            for where, name, user_json, renewed in affected:
                current = self.store.get("pipeline", f"{where}/{name}")
                self._save(f"{where}/{name}", name, where, user_json, renewed, current)
        return {
            "affectedPipelines": [
                {"name": name, "project": {"name": where}} for where, name, _, _ in affected
            ]
        }

    def _validate(self, spec: dict[str, Any], name: str, project: str) -> None:
        """api_server.go validatePipelineRequest, validateSecret, defaults.go
        staticallyValidate: refusals are plain errors (gRPC Unknown, HTTP 500)."""
        spec = copy.deepcopy(spec)
        _input_defaults(spec.get("input") or {}, name, project)
        if not spec.get("transform") and spec.get("spout") is None:
            raise refused("invalid pipeline spec: transform must be set")
        service = spec.get("service")
        spout = spec.get("spout")
        for field_name, shown in (("podPatch", "PodPatch"), ("podSpec", "PodSpec")):
            text = spec.get(field_name)
            if text:
                try:
                    json.loads(str(text))
                except json.JSONDecodeError:
                    raise refused(f"malformed {shown}") from None
        if service is not None:
            constant = (spec.get("parallelismSpec") or {}).get("constant")
            if constant not in (None, 1, "1"):
                raise refused("services can only be run with a constant parallelism of 1")
            kind = service.get("type") if isinstance(service, dict) else None
            if kind and kind not in ("ClusterIP", "LoadBalancer", "NodePort"):
                raise refused(f"the following service type {kind} is not allowed")
        if spout is not None and spec.get("autoscaling"):
            raise refused(
                "autoscaling can't be used with spouts (spouts aren't triggered by inputs)"
            )
        if spout is not None and service is None and spec.get("input"):
            raise refused("spout pipelines (without a service) must not have an input")
        if spec.get("s3Out") and (service is not None or spout is not None):
            raise refused("s3 output is not supported in spouts or services")
        if spec.get("input"):
            _check_input(spec["input"])
        for repo_project, repo in sorted(_input_repos(spec, project)):
            if self.store.get("repo", f"{repo_project}/{repo}/user") is None:
                raise refused(f"repo {repo_project}/{repo} not found")
        # validateSecret: transform.secrets only (image pull and egress secrets are not
        # checked at create); any secret of the namespace counts, made through pachd or not.
        for mount in (spec.get("transform") or {}).get("secrets") or []:
            secret_name = str(mount.get("name") or "")
            if mount.get("envVar") and not mount.get("key"):
                raise refused(f"secret {secret_name} has env_var set but is missing key")
            secret = self.store.get("secret", secret_name)
            if secret is None:
                raise refused(f"missing Kubernetes secret {secret_name}")
            keys = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
            if mount.get("envVar") and mount.get("key") not in keys:
                raise refused(f"Kubernetes secret {secret_name} missing key {mount.get('key')}")

    def StopPipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_stopped(body, True)

    def StartPipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_stopped(body, False)

    def _set_stopped(self, body: dict[str, Any], stopped: bool) -> dict[str, Any]:
        pipeline = body.get("pipeline") or {}
        key = f"{_project_name(pipeline)}/{pipeline.get('name')}"
        current = self.store.get("pipeline", key)
        if current is None:
            raise not_found(f"pipeline {key} not found")
        current["stopped"] = stopped
        current["state"] = "PIPELINE_PAUSED" if stopped else "PIPELINE_STARTING"
        if not stopped:
            current["startedAt"] = self.clock()  # its workers start again
        self.store.put("pipeline", key, current)
        return {}

    def DeletePipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        pipeline = body.get("pipeline") or {}
        project = _project_name(pipeline)
        name = str(pipeline.get("name") or "")
        key = f"{project}/{name}"
        current = self.store.get("pipeline", key)
        if current is None:
            if body.get("mustExist"):
                raise not_found(f"pipeline {key} not found")
            return {}
        readers = [
            p["pipeline"]["name"]
            for p in self.store.all("pipeline")
            if (project, name) in _input_repos(p["spec"], p["pipeline"]["project"]["name"])
        ]
        if readers and not body.get("force"):
            # api_server.go deletePipeline: the pipeline is stopped in a transaction of its
            # own, then deleting its output branch fails (it is in another pipeline's
            # provenance): left stopped, and not deleted.
            current["stopped"] = True
            current["state"] = "PIPELINE_PAUSED"
            self.store.put("pipeline", key, current)
            raise GrpcError(
                2,
                f"branch {key}@master is in the provenance of pipeline {readers[0]}:"
                " cannot delete it",
                commit=True,
            )
        self.store.delete("pipeline", key)
        for kind in ("spec", "meta"):
            self.store.delete("repo", f"{project}/{name}/{kind}")
        if not body.get("keepRepo"):
            self.store.delete("repo", f"{project}/{name}/user")
        for cron in _cron_repos(current["spec"]):
            self.store.delete("repo", f"{project}/{cron}/user")
        return {}


RPCS: dict[str, tuple[str, bool, bool]] = {
    # path: (method, streams, mutates)
    "pfs_v2.API/ListProject": ("ListProject", True, False),
    "pfs_v2.API/CreateProject": ("CreateProject", False, True),
    "pfs_v2.API/DeleteProject": ("DeleteProject", False, True),
    "pfs_v2.API/ListRepo": ("ListRepo", True, False),
    "pfs_v2.API/CreateRepo": ("CreateRepo", False, True),
    "pfs_v2.API/DeleteRepo": ("DeleteRepo", False, True),
    "pps_v2.API/CreateSecret": ("CreateSecret", False, True),
    "pps_v2.API/DeleteSecret": ("DeleteSecret", False, True),
    "pps_v2.API/ListSecret": ("ListSecret", False, False),
    "pps_v2.API/InspectSecret": ("InspectSecret", False, False),
    "pps_v2.API/ListPipeline": ("ListPipeline", True, False),
    "pps_v2.API/InspectPipeline": ("InspectPipeline", False, False),
    "pps_v2.API/GetClusterDefaults": ("GetClusterDefaults", False, False),
    "pps_v2.API/SetClusterDefaults": ("SetClusterDefaults", False, True),
    "pps_v2.API/GetProjectDefaults": ("GetProjectDefaults", False, False),
    "pps_v2.API/SetProjectDefaults": ("SetProjectDefaults", False, True),
    "pps_v2.API/CreatePipelineV2": ("CreatePipelineV2", False, True),
    "pps_v2.API/DeletePipeline": ("DeletePipeline", False, True),
    "pps_v2.API/StopPipeline": ("StopPipeline", False, True),
    "pps_v2.API/StartPipeline": ("StartPipeline", False, True),
}


def rpc(pachd: Pachd, path: str) -> Callable[[dict[str, Any]], Any] | None:
    entry = RPCS.get(path)
    return getattr(pachd, entry[0]) if entry else None


# --- server defaults and input checks ------------------------------------------------------


MAP_FIELDS = frozenset({"env", "nodeSelector", "labels", "annotations"})
"""Map fields: their keys are the user's, never renamed (protojson map keys)."""


def json_named(value: Any, field_name: str = "") -> Any:
    """defaults.go makeMessageCanonicalizer: both the proto name (`datum_tries`) and the
    JSON name (`datumTries`) of a field are accepted; the JSON name is kept."""
    if isinstance(value, dict):
        if field_name in MAP_FIELDS:
            return dict(value)
        renamed = {}
        for key, item in value.items():
            head, *rest = str(key).split("_")
            name = head + "".join(part[:1].upper() + part[1:] for part in rest)
            renamed[name] = json_named(item, name)
        return renamed
    if isinstance(value, list):
        return [json_named(item, field_name) for item in value]
    return value


INT64_FIELDS = frozenset(
    {"datumTries", "constant", "tolerationSeconds", "number", "acceptReturnCode", "sizeBytes"}
)


def _numbers(value: Any, field_name: str = "") -> Any:
    """int64 values written as strings, as protojson accepts (and writes) them, as
    numbers: the JSON Schema beside the swagger description knows only numbers."""
    if isinstance(value, dict):
        return {k: _numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v, field_name) for v in value]
    if isinstance(value, str) and field_name in INT64_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def rfc7396(target: Any, patch: Any) -> Any:
    """defaults.go mergePatch (RFC 7396)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
            continue
        merged[key] = rfc7396(merged.get(key), value)
    return merged


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise invalid(f"could not unmarshal {text!r} as JSON") from None
    if not isinstance(value, dict):
        raise invalid(f"{text!r} is not a JSON object")
    return value


def _input_defaults(node: dict[str, Any], pipeline: str, project: str) -> None:
    pfs = node.get("pfs")
    if isinstance(pfs, dict):
        pfs.setdefault("branch", "master")
        pfs.setdefault("name", pfs.get("repo"))
        pfs.setdefault("repoType", "user")
        pfs.setdefault("project", project)
    cron = node.get("cron")
    if isinstance(cron, dict):
        cron.setdefault("repo", f"{pipeline}_{cron.get('name')}")
        cron.setdefault("project", project)
    for key in ("join", "group", "cross", "union"):
        for child in node.get(key) or []:
            _input_defaults(child, pipeline, project)


def _check_input(node: dict[str, Any]) -> None:
    kinds = [k for k in ("pfs", "join", "group", "cross", "union", "cron") if node.get(k)]
    if len(kinds) > 1:
        raise refused("multiple input types set")
    if not kinds:
        raise refused("no input set")
    cron = node.get("cron")
    if cron:
        # api_server.go validateInput: cronutil.ParseCronExpression (robfig/cron).
        problem = cron_problem(str(cron.get("spec") or ""))
        if problem:
            raise refused(f"error parsing cron-spec: {problem}")
    pfs = node.get("pfs")
    if pfs:
        if not pfs.get("repo"):
            raise refused("input must specify a repo")
        if not pfs.get("glob"):
            raise refused("input must specify a glob")
        if pfs.get("commit"):
            raise refused("input cannot specify a commit")
        if pfs.get("s3") and pfs.get("glob") != "/":
            raise refused("s3 inputs must use glob '/'")
    for key in ("join", "group", "cross", "union"):
        for child in node.get(key) or []:
            _check_input(child)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every input node, this one first, at any depth."""
    yield node
    for key in ("join", "group", "cross", "union"):
        for child in node.get(key) or []:
            yield from _nodes(child)


def _input_repos(spec: dict[str, Any], project: str) -> set[tuple[str, str]]:
    return {
        (str(node["pfs"].get("project") or project), str(node["pfs"]["repo"]))
        for node in _nodes(spec.get("input") or {})
        if node.get("pfs") and node["pfs"].get("repo")
    }


def _cron_repos(spec: dict[str, Any]) -> list[str]:
    return [
        str(node["cron"]["repo"])
        for node in _nodes(spec.get("input") or {})
        if node.get("cron") and node["cron"].get("repo")
    ]


def _repo_key(repo: dict[str, Any]) -> str:
    return f"{_project_name(repo)}/{repo.get('name')}/{repo.get('type') or 'user'}"
