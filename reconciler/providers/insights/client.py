"""The Package Manager v2 API: one method per operation the provider uses.

Methods, paths and bodies come from the contract (`reconciler.schemas.PACKAGE_MANAGER`,
copied to `specs/insights-package-manager-v2.openapi.yaml`) by operationId, never from
strings written here, so the client and the sandbox follow one description. Errors come
from `reconciler.providers.http` already mapped, with the platform's own `detail`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import schemas
from reconciler.errors import PermanentError
from reconciler.providers.http import HttpClient, HttpError
from reconciler.providers.insights.contract import Difference, compare

OPERATIONS = schemas.package_manager()

USED = (
    "listPackages",
    "createPackage",
    "validatePackage",
    "deletePackage",
    "pushArtifact",
    "listDeployments",
    "createDeployment",
    "deleteDeployment",
    "cleanupDeployment",
    "patchDeploymentRuntime",
    "patchGlobalProcRuntime",
)
"""Every operation the provider calls: `reconciler doctor` checks a live instance has them."""


def entity(component: str) -> dict[str, str]:
    """`pipeline:equities-rt` as the API's entity `{type, name}`."""
    type_, _, name = component.partition(":")
    return {"type": type_, "name": name}


def component(item: Mapping[str, Any]) -> str:
    return f"{item.get('type')}:{item.get('name')}"


class PackageManagerClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def _call(
        self,
        operation: str,
        *,
        path: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        op = OPERATIONS[operation]
        answer = await self.http.request(
            op.method,
            op.url(**(path or {})),
            body=body,
            content=content,
            params=params,
            read=not op.mutates,
        )
        return unwrapped(answer)

    # --- reads: two calls observe a whole target ---------------------------------------

    async def openapi(self) -> tuple[str, Any]:
        """The instance's own description of its API (public: no token sent), and where it
        was found: `/openapi` (a JSON document, or a page that links one), else
        `/packagemanager/openapi.json`. None when neither holds one."""
        tried: list[str] = []
        pending = list(DESCRIPTIONS)
        while pending:
            path = pending.pop(0)
            tried.append(path)
            try:
                kind, text = await self.http.text(path, anonymous=True)
            except HttpError as exc:
                if exc.status in (404, 405, 406):
                    continue
                raise
            document = _document(text)
            if document is not None:
                return path, document
            if "html" in kind or text.lstrip().startswith("<"):
                pending[:0] = [p for p in _linked(text) if p not in tried]
        return ", ".join(tried), None

    async def list_packages(self) -> list[dict[str, Any]]:
        return _list(await self._call("listPackages"), "listPackages")

    async def list_deployments(self) -> list[dict[str, Any]]:
        return _list(await self._call("listDeployments"), "listDeployments")

    # --- packages and artifacts --------------------------------------------------------

    async def push_artifact(self, data: bytes, *, force: bool) -> dict[str, Any]:
        params = {"force": "true"} if force else None
        answer = await self._call("pushArtifact", content=data, params=params)
        return answer if isinstance(answer, dict) else {}

    async def validate_package(self, package: Mapping[str, Any]) -> None:
        """Check a Package object (`Artifact.package_object`); persists nothing."""
        await self._call("validatePackage", body=dict(package))

    async def create_package(self, package: Mapping[str, Any]) -> None:
        """Register a Package object as a version of its package."""
        await self._call("createPackage", body=dict(package))

    async def delete_package(self, name: str, version: str) -> None:
        await self._call("deletePackage", path={"name": name}, params={"version": version})

    async def convert_assembly(self, assembly: bytes) -> bytes:
        """The package the Package Manager makes of a legacy assembly, as a .kxi archive
        (client.migrations.convert, without installing it)."""
        op = OPERATIONS["convertAssembly"]
        return await self.http.binary(
            op.method, op.url(), content=assembly, params={"install": "false"}
        )

    # --- deployments -------------------------------------------------------------------

    async def create_deployment(
        self,
        package: str,
        version: str,
        components: Sequence[str] | None,
        env: Mapping[str, Mapping[str, str]],
    ) -> dict[str, Any]:
        """Deploy `package` (whole, with `env`), or only `components` (into its
        deployment, if it has one)."""
        body: dict[str, Any] = {"package": package, "version": version}
        if components is not None:
            body["entities"] = [entity(c) for c in components]
        if env:
            body["env"] = {key: dict(values) for key, values in env.items()}
        answer = await self._call("createDeployment", body=body)
        if not isinstance(answer, dict) or "id" not in answer:
            raise PermanentError(
                f"createDeployment {package} answered without a deployment id", refused=False
            )
        return answer

    async def hot_load(
        self, deployment_id: str, package: str, version: str, targets: Sequence[str]
    ) -> None:
        """Load `version`'s code into the named running processes (Data Access Processes,
        aggregators): client.deployments.patch_deployment_runtime."""
        body = {"package": package, "version": version, "targets": list(targets)}
        await self._call("patchDeploymentRuntime", path={"id": deployment_id}, body=body)

    async def hot_load_global(
        self, deployment_id: str, package: str, version: str, processes: Sequence[str]
    ) -> None:
        """The same for global aggregators: patch_global_proc_runtime."""
        body = {"package": package, "version": version, "globalProcesses": list(processes)}
        await self._call("patchGlobalProcRuntime", path={"id": deployment_id}, body=body)

    async def delete_deployment(self, deployment_id: str, *, cleanup: bool) -> None:
        """Tear the deployment down (asynchronous: poll for Inactive)."""
        await self._call(
            "deleteDeployment",
            path={"id": deployment_id},
            params={"cleanup": "true" if cleanup else "false"},
        )

    async def cleanup(self, deployment_id: str) -> None:
        """Delete a deployment's persisted data without a teardown, waiting for it
        (client.deployments.cleanup with `wait`: no status says when a cleanup is done)."""
        await self._call("cleanupDeployment", path={"id": deployment_id}, params={"wait": "true"})

    async def delete_component(self, deployment_id: str, component: str) -> None:
        """Tear down one pipeline or database of a deployment, waiting for it (`wait`);
        its persisted data stays."""
        kind, _, name = component.partition(":")
        await self._call(
            "deleteDeployment",
            path={"id": deployment_id},
            params={"component": f"{kind}s", "component_id": name, "wait": "true"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def _list(answer: Any, operation: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list):
        raise PermanentError(f"{operation} answered with something other than a list")
    return [item for item in answer if isinstance(item, dict)]


DESCRIPTIONS = ("/openapi", "/packagemanager/openapi.json")
"""Where an instance may describe its API: KX documents a browsable reference at
`/openapi`; whether a machine-readable document is served there or beside the service is
not documented (NOTES.md), so both are tried, and a page's link to a JSON document is
followed."""

_LINK = re.compile(r"""(?:href|src|url|spec-url)\s*[=:]\s*["']([^"'<>\s]+\.json)["']""")


def unwrapped(answer: Any) -> Any:
    """The payload of an answer: KX's client returns `Value` wrappers, documents whose
    payload is `data` (JSON:API style, with `meta` or `links` beside it); a bare payload
    is taken as it is."""
    if isinstance(answer, dict) and "data" in answer and set(answer) <= WRAPPER_KEYS:
        return answer["data"]
    return answer


WRAPPER_KEYS = frozenset({"data", "meta", "links", "included", "jsonapi"})


def _document(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("paths"), dict) else None


def _linked(page: str) -> list[str]:
    """The JSON documents an HTML page links (Swagger UI's `url:`, ReDoc's `spec-url`),
    as paths on the same host; links to other hosts are not followed."""
    found = []
    for link in _LINK.findall(page):
        if "://" in link or link.startswith("//"):
            continue
        found.append(link if link.startswith("/") else "/" + link)
    return list(dict.fromkeys(found))


def differences(live: Any) -> list[Difference]:
    """Where a live description differs from what the provider sends and reads."""
    return compare(schemas.load(schemas.PACKAGE_MANAGER), live, USED)
