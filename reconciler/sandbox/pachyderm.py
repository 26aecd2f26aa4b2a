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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import fastjsonschema

from reconciler import schemas
from reconciler.sandbox.store import Store

if TYPE_CHECKING:
    from jsonschema import Draft7Validator

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,50}\Z")
DEFAULT_PROJECT = "default"


class GrpcError(Exception):
    """A refusal as pachd sends it: a gRPC code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


class Pachd:
    """The state and the RPCs; every method runs inside one store transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- projects ----------------------------------------------------------------------

    def _projects(self) -> dict[str, dict[str, Any]]:
        found = {p["project"]["name"]: p for p in self.store.all("project")}
        found.setdefault(
            DEFAULT_PROJECT,
            {"project": {"name": DEFAULT_PROJECT}, "description": "", "createdAt": _now()},
        )
        return found

    def _need_project(self, name: str) -> None:
        if name not in self._projects():
            raise not_found(f"project {name} not found")

    def ListProject(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        projects = self._projects()
        return [projects[name] for name in sorted(projects)]

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
        wanted = body.get("type", "")
        projects = {p.get("name") for p in body.get("projects") or []}
        return [
            r
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
        return {k: secret[k] for k in ("secret", "type", "creationTimestamp")}

    def ListSecret(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"secretInfo": [self._secret_info(s) for s in self.store.all("secret")]}

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
            info = {k: v for k, v in pipeline.items() if k != "spec"}
            if not body.get("details"):
                info.pop("details", None)
            found.append(info)
        return found

    def CreatePipelineV2(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = json.loads(str(body.get("createPipelineRequestJson") or ""))
        except json.JSONDecodeError as exc:
            raise invalid(f"malformed createPipelineRequestJson: {exc}") from None
        if not isinstance(request, dict):
            raise invalid("malformed createPipelineRequestJson: an object expected")
        errors = (
            []
            if _pipeline_accepts(request)
            else sorted(_pipeline_schema().iter_errors(request), key=lambda e: list(e.path))
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].path)
            raise invalid(
                f"malformed createPipelineRequestJson at {where or '.'}: {errors[0].message}"
            )
        pipeline = request.get("pipeline") or {}
        name = str(pipeline.get("name") or "")
        project = _project_name(pipeline)
        if not NAME.match(name):
            raise invalid(f"invalid pipeline name {name!r}")
        self._need_project(project)
        spec = {
            k: v
            for k, v in request.items()
            if k not in ("pipeline", "update", "reprocess", "dryRun")
        }
        effective = effective_spec(spec, name, project)
        self._validate(effective, name, project)
        key = f"{project}/{name}"
        current = self.store.get("pipeline", key)
        update = bool(body.get("update"))
        if current is not None and not update:
            raise exists(f"pipeline {project}/{name} already exists")
        if current is None and self.store.get("repo", f"{project}/{name}/user") is not None:
            raise exists(
                f"cannot create pipeline {project}/{name}: repo {project}/{name} already exists"
            )
        effective_json = json.dumps(
            {"pipeline": {"name": name, "project": {"name": project}}, **effective}
        )
        if body.get("dryRun"):
            return {"effectiveCreatePipelineRequestJson": effective_json}
        version = int(current["version"]) + 1 if current else 1
        info = {
            "pipeline": {"name": name, "project": {"name": project}},
            "version": str(version),
            "state": "PIPELINE_RUNNING"
            if not (current or {}).get("stopped")
            else "PIPELINE_PAUSED",
            "stopped": bool((current or {}).get("stopped")),
            "type": "PIPELINE_TYPE_SERVICE"
            if "service" in spec
            else ("PIPELINE_TYPE_SPOUT" if "spout" in spec else "PIPELINE_TYPE_TRANSFORM"),
            "userSpecJson": json.dumps(
                {"pipeline": {"name": name, "project": {"name": project}}, **spec}
            ),
            "effectiveSpecJson": effective_json,
            "details": {**copy.deepcopy(effective), "createdAt": _now()},
            "spec": effective,
        }
        self.store.put("pipeline", key, info)
        for repo_name, kind in [
            (name, "user"),
            (name, "spec"),
            (name, "meta"),
            *((cron, "user") for cron in _cron_repos(effective)),
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
        return {"effectiveCreatePipelineRequestJson": effective_json}

    def _validate(self, spec: dict[str, Any], name: str, project: str) -> None:
        if not spec.get("transform") and not spec.get("spout"):
            raise invalid("invalid pipeline spec: transform must be set")
        service = spec.get("service")
        spout = spec.get("spout")
        if service is not None:
            constant = (spec.get("parallelismSpec") or {}).get("constant")
            if constant not in (None, 1, "1"):
                raise invalid("services can only be run with a constant parallelism of 1")
        if spout is not None and spec.get("autoscaling"):
            raise invalid(
                "autoscaling can't be used with spouts (spouts aren't triggered by inputs)"
            )
        if spout is not None and service is None and spec.get("input"):
            raise invalid("spout pipelines (without a service) must not have an input")
        if spec.get("s3Out") and (service is not None or spout is not None):
            raise invalid("s3 output is not supported in spouts or services")
        if spec.get("input"):
            _check_input(spec["input"])
        for repo_project, repo in sorted(_input_repos(spec, project)):
            if self.store.get("repo", f"{repo_project}/{repo}/user") is None:
                raise not_found(f"repo {repo_project}/{repo} not found")
        transform = spec.get("transform") or {}
        names = [m.get("name") for m in transform.get("secrets") or []]
        names += list(transform.get("imagePullSecrets") or [])
        for secret in names:
            if secret and self.store.get("secret", str(secret)) is None:
                raise GrpcError(9, f"missing Kubernetes secret {secret}")

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
        current["state"] = "PIPELINE_PAUSED" if stopped else "PIPELINE_RUNNING"
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
            raise GrpcError(
                9, f"cannot delete pipeline {key}: pipeline {readers[0]} reads its output"
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
    "pps_v2.API/CreatePipelineV2": ("CreatePipelineV2", False, True),
    "pps_v2.API/DeletePipeline": ("DeletePipeline", False, True),
    "pps_v2.API/StopPipeline": ("StopPipeline", False, True),
    "pps_v2.API/StartPipeline": ("StartPipeline", False, True),
}


def rpc(pachd: Pachd, path: str) -> Callable[[dict[str, Any]], Any] | None:
    entry = RPCS.get(path)
    return getattr(pachd, entry[0]) if entry else None


# --- server defaults and input checks ------------------------------------------------------


def effective_spec(spec: dict[str, Any], name: str, project: str) -> dict[str, Any]:
    """`spec` with the defaults pachd fills in (NOTES.md), as `effectiveSpecJson` holds it."""
    effective = copy.deepcopy(spec)
    if "transform" in effective:
        effective["transform"].setdefault("image", "ubuntu:20.04")
    effective.setdefault("outputBranch", "master")
    effective.setdefault("datumTries", "3")
    if isinstance(effective["datumTries"], int):
        effective["datumTries"] = str(effective["datumTries"])
    effective.setdefault("reprocessSpec", "until_success")
    if "service" in effective:
        effective["service"].setdefault("type", "NodePort")
    if "input" in effective:
        _input_defaults(effective["input"], name, project)
    return effective


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
        raise invalid("multiple input types set")
    if not kinds:
        raise invalid("no input set")
    pfs = node.get("pfs")
    if pfs:
        if not pfs.get("repo"):
            raise invalid("input must specify a repo")
        if not pfs.get("glob"):
            raise invalid("input must specify a glob")
        if pfs.get("commit"):
            raise invalid("input cannot specify a commit")
        if pfs.get("s3") and pfs.get("glob") != "/":
            raise invalid("s3 inputs must use glob '/'")
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
