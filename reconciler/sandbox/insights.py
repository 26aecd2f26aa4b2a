"""An emulator of the kdb Insights Package Manager v2 API, and a Keycloak-like token endpoint.

Routes come from the contract (`reconciler.schemas.PACKAGE_MANAGER`) by operationId, as
the provider's client does: one handler per operation, named after it. Behaviour follows
the reference NOTES: package names `^[a-z]([-a-z0-9]*[a-z0-9])?$` of at most 24
characters and PEP 440-like versions, several versions of a package side by side, 409 on
pushing an existing name+version without `force`, 404 on deploying a missing version,
409 on deleting a version a deployment runs, deployments Initializing then Running after
a delay (Error, with a message, when a pipeline's spec file is missing from the package),
bounces counted per component, and teardown keeping persisted data unless `cleanup`.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import secrets
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import packaging.version
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.sandbox.store import Store

NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
NAME_MAX = 24
TYPES = ("pipelines", "databases", "views")
ARTIFACT, PACKAGE, DEPLOYMENT, DATA, TOKEN = (
    "insights.artifact",
    "insights.package",
    "insights.deployment",
    "insights.data",
    "insights.token",
)


class ApiError(Exception):
    """A refusal as the Package Manager sends it: a status and a message, written in the
    shape `InsightsOptions.error_shape` says (`body`)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def body(self, shape: str) -> dict[str, Any]:
        if shape == "errorMessage":
            return {"errorMessage": self.detail}
        if shape == "error":
            return {"error": self.detail}
        if shape == "nested":
            return {"message": "the request was refused", "detail": {"message": self.detail}}
        return {"detail": self.detail}


@dataclass(frozen=True)
class InsightsOptions:
    deploy_delay: float = 0.2
    """Seconds a deployment stays Initializing after a create or a bounce, and a teardown
    takes (it is asynchronous unless `wait`, NOTES.md "Deployments")."""
    error_shape: str = "detail"
    """How refusals are written (not documented for the Package Manager; other Insights
    services answer each of these): `detail` ({"detail": ...}), `errorMessage`, `error`,
    or `nested` ({"message": ..., "detail": {"message": ...}})."""
    status_case: str = "title"
    """How statuses are spelt: `title` (Running, as the UI shows them), `upper` or
    `lower`; KX does not publish the API's strings, so a client must not depend on it."""
    clients: Mapping[str, str] = field(default_factory=dict)
    """Keycloak clients (id to secret). When set, every API call needs a bearer token."""
    token_ttl: float = 300.0
    realm: str = "insights"
    invented_fields: bool = True
    """False: answers carry only what KX documents: of a package its name, version, uuid
    and time; of a deployment its id, package, version, status and message; not the
    sha256, components, entities and env our first contract assumed a server echoes. A
    client must converge without them."""


@dataclass(frozen=True)
class Call:
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def flag(self, name: str) -> bool:
        return self.query.get(name, "false").lower() in ("1", "true", "yes")


def _key(name: str, version: str) -> str:
    return f"{name}@{version}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _yaml(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return YAML(typ="safe", pure=True).load(data.decode("utf-8"))
    except (YAMLError, UnicodeDecodeError):
        return None


class PackageManager:
    """The state and the operations; each handler runs inside one store transaction."""

    def __init__(
        self,
        store: Store,
        options: InsightsOptions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.options = options
        self.clock = clock

    # --- authentication ----------------------------------------------------------------

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type")
        client, secret = form.get("client_id", ""), form.get("client_secret", "")
        known = self.options.clients
        if known and (client not in known or not secrets.compare_digest(known[client], secret)):
            raise ApiError(401, "Invalid client or Invalid client credentials")
        token = secrets.token_urlsafe(24)
        expires = self.clock() + self.options.token_ttl
        self.store.put(TOKEN, token, {"client": client, "expires": expires})
        return {
            "access_token": token,
            "expires_in": int(self.options.token_ttl),
            "token_type": "Bearer",
        }

    def authorise(self, headers: Mapping[str, str]) -> None:
        if not self.options.clients:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing bearer token")
        held = self.store.get(TOKEN, token)
        if held is None or float(held["expires"]) <= self.clock():
            raise ApiError(401, "token expired or invalid")

    def expire_tokens(self) -> int:
        tokens = self.store.all(TOKEN)
        for key in self.store.keys(TOKEN):
            self.store.delete(TOKEN, key)
        return len(tokens)

    # --- artifacts and packages --------------------------------------------------------

    def pushArtifact(self, call: Call) -> tuple[int, Any]:
        files = _unzip(call.body)
        manifest = _yaml(files.get("manifest.yaml"))
        if not isinstance(manifest, dict):
            raise ApiError(422, "the artifact has no readable manifest.yaml at its top")
        name, version = str(manifest.get("name")), str(manifest.get("version"))
        _check_name(name, version)
        key = _key(name, version)
        if self.store.get(ARTIFACT, key) is not None and not call.flag("force"):
            raise ApiError(409, f"artifact {name}-{version}.kxi exists; push with force")
        sha = hashlib.sha256(call.body).hexdigest()
        digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
        components = _components(manifest)
        artifact = {
            "name": name,
            "version": version,
            "sha256": sha,
            "files": digests,
            "components": components,
            "broken": _broken(manifest, files),
            "problems": _missing(manifest, files),
        }
        self.store.put(ARTIFACT, key, artifact)
        self.store.count("events", "artifact push")
        package = self.store.get(PACKAGE, key)
        if package is not None:  # a registered version takes the new content
            package.update(sha256=sha, components=_entities(components))
            self.store.put(PACKAGE, key, package)
        return 201, self._package({"name": name, "version": version, "sha256": sha})

    def _artifact(self, call: Call) -> dict[str, Any]:
        """The pushed artifact a Package object describes (client.packages.create and
        validate send the whole object: manifest and component definitions)."""
        body = call.json()
        name, version = str(body.get("name") or ""), str(body.get("version") or "")
        _check_name(name, version)
        manifest = body.get("manifest")
        if not isinstance(manifest, dict):
            raise ApiError(422, "a Package object carries its manifest")
        if (str(manifest.get("name")), str(manifest.get("version"))) != (name, version):
            raise ApiError(422, f"the manifest is not that of {name} {version}")
        artifact = self.store.get(ARTIFACT, _key(name, version))
        if artifact is None:
            raise ApiError(404, f"no artifact {name}-{version}.kxi: push it first")
        problems = _problems(artifact)
        if problems:
            raise ApiError(422, f"package {name} {version} is not valid: " + "; ".join(problems))
        return artifact

    def validatePackage(self, call: Call) -> tuple[int, Any]:
        self._artifact(call)
        return 200, {"valid": True}

    def createPackage(self, call: Call) -> tuple[int, Any]:
        artifact = self._artifact(call)
        key = _key(artifact["name"], artifact["version"])
        if self.store.get(PACKAGE, key) is not None:
            raise ApiError(409, f"package {artifact['name']} {artifact['version']} exists")
        package = {
            "name": artifact["name"],
            "version": artifact["version"],
            "uuid": str(uuid.uuid4()),
            "sha256": artifact["sha256"],
            "components": _entities(artifact["components"]),
            "createdAt": _now(),
        }
        self.store.put(PACKAGE, key, package)
        return 201, self._package(package)

    def listPackages(self, call: Call) -> tuple[int, Any]:
        return 200, [self._package(p) for p in self.store.all(PACKAGE)]

    def _package(self, package: dict[str, Any]) -> dict[str, Any]:
        if self.options.invented_fields:
            return package
        return {k: v for k, v in package.items() if k not in ("sha256", "components")}

    def _shown(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        shown = _shown(deployment)
        status = str(shown.get("status", ""))
        case = self.options.status_case
        shown["status"] = (
            status.upper() if case == "upper" else (status.lower() if case == "lower" else status)
        )
        if self.options.invented_fields:
            return shown
        return {k: v for k, v in shown.items() if k not in ("entities", "env")}

    def deletePackage(self, call: Call) -> tuple[int, Any]:
        name, version = call.params["name"], call.query.get("version")
        doomed = [
            p
            for p in self.store.all(PACKAGE)
            if p["name"] == name and (version is None or p["version"] == version)
        ]
        if not doomed:
            raise ApiError(404, f"no package {name}" + (f" {version}" if version else ""))
        for package in doomed:
            for deployment in self._active():
                if (deployment["package"], deployment["version"]) == (name, package["version"]):
                    raise ApiError(
                        409,
                        f"package {name} {package['version']} is deployed: tear it down first",
                    )
        for package in doomed:
            key = _key(name, package["version"])
            self.store.delete(PACKAGE, key)
            self.store.delete(ARTIFACT, key)
        return 204, None

    # --- deployments -------------------------------------------------------------------

    def _deployments(self) -> list[dict[str, Any]]:
        return [self._settled(d) for d in self.store.all(DEPLOYMENT)]

    def _settled(self, deployment: dict[str, Any]) -> dict[str, Any]:
        """Initializing turns Running, and Terminating (a teardown, a status the UI does not
        show) turns Inactive, once its time has come."""
        due = self.clock() >= deployment["readyAt"]
        if deployment["status"] == "Initializing" and due:
            deployment["status"] = "Running"
            self.store.put(DEPLOYMENT, deployment["id"], deployment)
        elif deployment["status"] == "Terminating" and due:
            self._inactive(deployment)
        elif deployment.get("cleanup") and deployment["status"] != "Terminating":
            self._clean(deployment)  # a cleanup without `wait`: done by the next look
        return deployment

    def _inactive(self, deployment: dict[str, Any]) -> None:
        deployment["status"] = "Inactive"
        deployment["message"] = ""
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        if deployment.get("cleanup"):
            self._clean(deployment)

    def _active(self) -> list[dict[str, Any]]:
        return [d for d in self._deployments() if d["status"] != "Inactive"]

    def _deployment(self, deployment_id: str) -> dict[str, Any]:
        found = self.store.get(DEPLOYMENT, deployment_id)
        if found is None:
            raise ApiError(404, f"no deployment {deployment_id}")
        return self._settled(found)

    def listDeployments(self, call: Call) -> tuple[int, Any]:
        return 200, [self._shown(d) for d in self._deployments()]

    def getDeployment(self, call: Call) -> tuple[int, Any]:
        return 200, self._shown(self._deployment(call.params["id"]))

    def createDeployment(self, call: Call) -> tuple[int, Any]:
        """Deploy a package, keyed by the package (deployments have no name of their own;
        at most one version of a package is deployed). With `entities` on a deployed
        package, deploy those components into it; `env` goes only with a whole-package
        deploy (client.deployments.create / create_from_package, NOTES.md)."""
        body = call.json()
        package, version = str(body.get("package") or ""), str(body.get("version") or "")
        artifact = self.store.get(ARTIFACT, _key(package, version))
        if self.store.get(PACKAGE, _key(package, version)) is None or artifact is None:
            raise ApiError(404, f"no package {package} {version} to deploy")
        known = set(artifact["components"])
        entities = [_component(e) for e in body.get("entities") or []]
        for wanted in entities:
            if wanted not in known:
                raise ApiError(400, f"package {package} {version} has no component {wanted}")
        env = body.get("env") or {}
        if env and entities:
            raise ApiError(
                422, "env is accepted only when deploying the whole package, not with entities"
            )
        names = {c.partition(":")[2] for c in known}
        for component_name in env:
            if component_name not in names:
                raise ApiError(400, f"env names {component_name!r}, not a component of {package}")
        current = next((d for d in self._active() if d["package"] == package), None)
        if current is not None:
            return self._add_entities(current, version, entities, artifact)
        deployed = entities or sorted(known)
        for inactive in self._deployments():
            if inactive["package"] == package:  # torn down before: deploying replaces it
                self.store.delete(DEPLOYMENT, inactive["id"])
                for restarted in deployed:  # a redeploy restarts what it deploys
                    self.store.count("restarts", f"insights:{package}/{restarted}")
        broken = [b for b in artifact.get("broken", []) if b["component"] in deployed]
        deployment_id = str(uuid.uuid4())
        deployment: dict[str, Any] = {
            "id": deployment_id,
            "package": package,
            "version": version,
            "entities": _entities(entities),
            "components": deployed,
            "env": {k: {vk: str(vv) for vk, vv in v.items()} for k, v in env.items()},
            "status": "Error" if broken else "Initializing",
            "message": "; ".join(b["message"] for b in broken),
            "readyAt": self.clock() + self.options.deploy_delay,
            "createdAt": _now(),
        }
        self.store.put(DEPLOYMENT, deployment_id, deployment)
        if any(c.startswith("database:") for c in deployed):
            self.store.put(DATA, package, {"package": package, "since": _now()})
        self.store.count("events", f"deploy {package}")
        return 201, self._shown(self._settled(deployment))

    def _add_entities(
        self,
        deployment: dict[str, Any],
        version: str,
        entities: list[str],
        artifact: Mapping[str, Any],
    ) -> tuple[int, Any]:
        package = deployment["package"]
        if not entities:
            raise ApiError(
                409,
                f"package {package} is deployed (version {deployment['version']}): tear it"
                " down first",
            )
        if version != deployment["version"]:
            raise ApiError(
                409, f"package {package} runs version {deployment['version']}, not {version}"
            )
        for added in entities:
            if added not in deployment["components"]:
                deployment["components"].append(added)
            # A component deployed again loads the package as pushed now: a restart.
            self.store.count("restarts", f"insights:{package}/{added}")
        broken = [b for b in artifact.get("broken", []) if b["component"] in entities]
        deployment["status"] = "Error" if broken else "Initializing"
        deployment["message"] = "; ".join(b["message"] for b in broken)
        deployment["readyAt"] = self.clock() + self.options.deploy_delay
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        self.store.count("events", f"deploy {package} {', '.join(entities)}")
        return 201, self._shown(deployment)

    def bounceDeployment(self, call: Call) -> tuple[int, Any]:
        deployment = self._deployment(call.params["id"])
        entities = [_component(e) for e in call.json().get("entities") or []]
        for wanted in entities:
            if wanted not in deployment["components"]:
                raise ApiError(400, f"deployment of {deployment['package']} does not run {wanted}")
        for restarted in entities or deployment["components"]:
            self.store.count("restarts", f"insights:{deployment['package']}/{restarted}")
        if deployment["status"] != "Error":
            deployment["status"] = "Initializing"
            deployment["readyAt"] = self.clock() + self.options.deploy_delay
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        return 202, self._shown(deployment)

    def patchDeploymentRuntime(self, call: Call) -> tuple[int, Any]:
        return self._hot_load(call, "targets")

    def patchGlobalProcRuntime(self, call: Call) -> tuple[int, Any]:
        return self._hot_load(call, "globalProcesses")

    def _hot_load(self, call: Call, processes: str) -> tuple[int, Any]:
        """Load a version's code into named running processes: they must be named."""
        deployment = self._deployment(call.params["id"])
        body = call.json()
        named = body.get(processes)
        if not isinstance(named, list) or not named:
            raise ApiError(400, f"{processes} must name the processes to load the code into")
        package, version = str(body.get("package") or ""), str(body.get("version") or "")
        if package != deployment["package"]:
            raise ApiError(400, f"deployment {deployment['id']} runs package {package}")
        artifact = self.store.get(ARTIFACT, _key(package, version))
        if self.store.get(PACKAGE, _key(package, version)) is None or artifact is None:
            raise ApiError(404, f"no package {package} {version} to load")
        if deployment["status"] == "Error":
            raise ApiError(409, f"the deployment of {package} is in Error: redeploy it")
        deployment["version"] = version
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        self.store.count("events", f"hot-load {package}")
        return 200, self._shown(deployment)

    def deleteDeployment(self, call: Call) -> tuple[int, Any]:
        """A teardown: asynchronous unless `wait` (the deployment shows Inactive once it
        is done, and stays listed so); `cleanup` also deletes the persisted data. With
        `component` (pipelines or databases) and `component_id`, that one component."""
        deployment = self._deployment(call.params["id"])
        package = deployment["package"]
        component = call.query.get("component")
        if component is not None:
            return self._teardown_component(deployment, component, call.query.get("component_id"))
        if deployment["status"] in ("Inactive", "Terminating"):
            return 202, self._shown(deployment)
        self.store.count("events", f"teardown {package}")
        deployment["cleanup"] = bool(deployment.get("cleanup")) or call.flag("cleanup")
        if call.flag("wait"):
            self._inactive(deployment)
            return 200, self._shown(deployment)
        deployment["status"] = "Terminating"
        deployment["readyAt"] = self.clock() + self.options.deploy_delay
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        return 202, self._shown(deployment)

    def cleanupDeployment(self, call: Call) -> tuple[int, Any]:
        """client.deployments.cleanup: delete the persisted data of a deployment without a
        teardown (KX: "Remove persisted data without tearing down the deployment"), of a
        running deployment as of a torn-down one; asynchronous unless `wait`."""
        deployment = self._deployment(call.params["id"])
        if call.flag("wait") or deployment["status"] == "Inactive":
            self._clean(deployment)
            return 200, self._shown(deployment)
        deployment["cleanup"] = True
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        return 202, self._shown(deployment)

    def _clean(self, deployment: dict[str, Any]) -> None:
        deployment.pop("cleanup", None)
        self.store.put(DEPLOYMENT, deployment["id"], deployment)
        self.store.delete(DATA, deployment["package"])
        self.store.count("events", f"cleanup {deployment['package']}")

    def _teardown_component(
        self, deployment: dict[str, Any], component: str, component_id: str | None
    ) -> tuple[int, Any]:
        kinds = {"pipelines": "pipeline", "databases": "database"}
        if component not in kinds or not component_id:
            raise ApiError(
                400, "component is pipelines or databases, with the component_id to tear down"
            )
        wanted = f"{kinds[component]}:{component_id}"
        if wanted not in deployment["components"]:
            raise ApiError(404, f"the deployment of {deployment['package']} runs no {wanted}")
        deployment["components"].remove(wanted)
        self.store.count("events", f"teardown {deployment['package']} {wanted}")
        if not deployment["components"]:
            self._inactive(deployment)
        else:
            self.store.put(DEPLOYMENT, deployment["id"], deployment)
        return 200, self._shown(deployment)

    def convertAssembly(self, call: Call) -> tuple[int, Any]:
        """client.migrations.convert: a kxi-controller assembly (KX, "Database
        configuration": name, labels, tables, mounts, bus, elements; or an Assembly
        resource) as a package archive: a table file per schema, a pipeline file per
        stream processor pipeline, the database as one shard, and the manifest."""
        assembly = _yaml(call.body)
        if isinstance(assembly, dict) and assembly.get("kind") == "Assembly":
            assembly = {
                **(assembly.get("spec") or {}),
                "name": (assembly.get("metadata") or {}).get("name"),
            }
        if not isinstance(assembly, dict) or not isinstance(assembly.get("name"), str):
            raise ApiError(422, "the body is not an assembly with a name")
        name = assembly["name"].lower()
        if not NAME.match(name) or len(name) > NAME_MAX:
            raise ApiError(422, f"assembly name {name!r} cannot name a package")
        dump = YAML(typ="safe", pure=True)
        files: dict[str, bytes] = {}
        manifest: dict[str, Any] = {"name": name, "version": "0.0.1", "dependencies": []}

        def put(path: str, document: Any) -> None:
            buffer = io.StringIO()
            dump.dump(document, buffer)
            files[path] = buffer.getvalue().encode()

        def entries(section: Any, what: str) -> dict[str, dict[str, Any]]:
            if not isinstance(section, dict):
                return {}
            for key, value in section.items():
                if not re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) or not isinstance(value, dict):
                    raise ApiError(422, f"{what} {key!r} cannot be converted")
            return {str(k): dict(v) for k, v in section.items()}

        for table, schema in entries(assembly.get("tables"), "table").items():
            put(f"tables/{table}.yaml", {**schema, "name": table})
            manifest.setdefault("tables", {})[table] = {"file": f"tables/{table}.yaml"}
        raw_elements = assembly.get("elements")
        elements: dict[str, Any] = raw_elements if isinstance(raw_elements, dict) else {}
        raw_sp = elements.get("sp")
        sp: dict[str, Any] = raw_sp if isinstance(raw_sp, dict) else {}
        for pipeline, spec in entries(sp.get("pipelines"), "pipeline").items():
            put(f"pipelines/{pipeline}.yaml", {**spec, "name": pipeline})
            path = f"pipelines/{pipeline}.yaml"
            manifest.setdefault("pipelines", {})[pipeline] = {"file": path}
        shard = {
            key: assembly[key]
            for key in ("labels", "mounts")
            if isinstance(assembly.get(key), dict)
        }
        if isinstance(elements.get("sm"), dict):
            shard["sm"] = elements["sm"]
        if isinstance(elements.get("dap"), dict):
            shard["daps"] = elements["dap"]
        if shard:
            put(f"databases/{name}/shards/{name}-shard.yaml", {"name": f"{name}-shard", **shard})
            manifest["databases"] = {
                name: {"dir": f"databases/{name}", "shards": [f"{name}-shard"], "tables": []}
            }
        put("manifest.yaml", manifest)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, data in sorted(files.items()):
                archive.writestr(path, data)
        self.store.count("events", f"convert {name}")
        return 200, buffer.getvalue()

    def data(self) -> list[str]:
        """Deployments whose persisted data exists (kept by a teardown without cleanup)."""
        return sorted(self.store.keys(DATA))


def _shown(deployment: Mapping[str, Any]) -> dict[str, Any]:
    hidden = ("readyAt", "components", "cleanup")
    return {k: v for k, v in deployment.items() if k not in hidden and (v or k == "entities")}


def _check_name(name: str, version: str) -> None:
    if not NAME.match(name) or len(name) > NAME_MAX:
        raise ApiError(
            422,
            f"invalid package name {name!r}: lower case letters, digits and '-', starting"
            f" with a letter, at most {NAME_MAX} characters",
        )
    try:
        packaging.version.Version(version)  # the Package Manager takes PEP 440 versions
    except packaging.version.InvalidVersion:
        raise ApiError(422, f"invalid package version {version!r}: use a PEP 440 version") from None


def _unzip(data: bytes) -> dict[str, bytes]:
    """A `.kxi`: a compressed (zip) archive of the package folder (NOTES.md, "The
    artifact"), the package at its top or in one folder there."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {
                posixpath.normpath(info.filename): archive.read(info)
                for info in archive.infolist()
                if not info.is_dir()
            }
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ApiError(400, "the body is not a .kxi archive (a zip)") from None
    tops = {path.split("/", 1)[0] for path in files}
    if "manifest.yaml" not in files and len(tops) == 1:
        (top,) = tops
        files = {path.removeprefix(top + "/"): data for path, data in files.items()}
    return files


def _sections(manifest: Mapping[str, Any], section: str) -> dict[str, dict[str, Any]]:
    found = manifest.get(section)
    if not isinstance(found, dict):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, dict)}


def _components(manifest: Mapping[str, Any]) -> list[str]:
    return sorted(
        f"{section[:-1]}:{name}" for section in TYPES for name in _sections(manifest, section)
    )


def _entities(components: list[str]) -> list[dict[str, str]]:
    return [{"type": c.partition(":")[0], "name": c.partition(":")[2]} for c in components]


def _component(item: Any) -> str:
    if not isinstance(item, dict) or not item.get("type") or not item.get("name"):
        raise ApiError(400, f"an entity is {{type, name}}, not {item!r}")
    return f"{item['type']}:{item['name']}"


def _broken(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> list[dict[str, str]]:
    """Pipelines whose spec file is missing: they deploy, then fail (state Error)."""
    broken = []
    for name, entry in _sections(manifest, "pipelines").items():
        spec = _yaml(files.get(posixpath.normpath(str(entry.get("file") or ""))))
        reference = spec.get("spec") if isinstance(spec, dict) else None
        if isinstance(reference, str) and (reference.startswith("file://") or "/" in reference):
            path = posixpath.normpath(reference.removeprefix("file://"))
            if path not in files:
                broken.append(
                    {
                        "component": f"pipeline:{name}",
                        "message": f"pipeline {name}: spec file {path} is not in the package",
                    }
                )
    return broken


def _missing(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> list[str]:
    """What validate refuses: a component whose file or folder the package does not hold."""
    problems = []
    for section in (*TYPES, "tables"):
        for name, entry in _sections(manifest, section).items():
            file, folder = entry.get("file"), entry.get("dir")
            if isinstance(file, str) and posixpath.normpath(file) not in files:
                problems.append(f"{section}.{name}: {file} is not in the package")
            if isinstance(folder, str):
                prefix = posixpath.normpath(folder) + "/"
                if not any(path.startswith(prefix) for path in files):
                    problems.append(f"{section}.{name}: folder {folder} is not in the package")
    return problems


def _problems(artifact: Mapping[str, Any]) -> list[str]:
    return list(artifact.get("problems", []))
