"""The Package Manager v2 API: one method per operation the provider uses.

Methods, paths and bodies come from the contract (`reconciler.schemas.PACKAGE_MANAGER`,
copied to `specs/insights-package-manager-v2.openapi.yaml`) by operationId, never from
strings written here, so the client and the sandbox follow one description. Errors come
from `reconciler.providers.http` already mapped, with the platform's own `detail`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import schemas
from reconciler.errors import PermanentError
from reconciler.providers.http import HttpClient

OPERATIONS = schemas.package_manager()

USED = (
    "listPackages",
    "createPackage",
    "validatePackage",
    "deletePackage",
    "pushArtifact",
    "listDeployments",
    "createDeployment",
    "getDeployment",
    "deleteDeployment",
    "bounceDeployment",
    "patchDeploymentRuntime",
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
        return await self.http.request(
            op.method,
            op.url(**(path or {})),
            body=body,
            content=content,
            params=params,
            read=not op.mutates,
        )

    # --- reads: two calls observe a whole target ---------------------------------------

    async def openapi(self) -> Any:
        """The instance's own description of its API (public: no token sent)."""
        return await self.http.request("GET", "/openapi", anonymous=True, read=True)

    async def list_packages(self) -> list[dict[str, Any]]:
        return _list(await self._call("listPackages"), "listPackages")

    async def list_deployments(self) -> list[dict[str, Any]]:
        return _list(await self._call("listDeployments"), "listDeployments")

    async def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        answer = await self._call("getDeployment", path={"id": deployment_id})
        if not isinstance(answer, dict):
            raise PermanentError(f"getDeployment {deployment_id} answered without a deployment")
        return answer

    # --- packages and artifacts --------------------------------------------------------

    async def push_artifact(self, data: bytes, *, force: bool) -> dict[str, Any]:
        params = {"force": "true"} if force else None
        answer = await self._call("pushArtifact", content=data, params=params)
        return answer if isinstance(answer, dict) else {}

    async def validate_package(self, name: str, version: str) -> None:
        await self._call("validatePackage", body={"name": name, "version": version})

    async def create_package(self, name: str, version: str) -> None:
        await self._call("createPackage", body={"name": name, "version": version})

    async def delete_package(self, name: str, version: str) -> None:
        await self._call("deletePackage", path={"name": name}, params={"version": version})

    # --- deployments -------------------------------------------------------------------

    async def create_deployment(
        self,
        name: str,
        package: str,
        version: str,
        components: Sequence[str] | None,
        env: Mapping[str, Mapping[str, str]],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "package": package, "version": version}
        if components is not None:
            body["entities"] = [entity(c) for c in components]
        if env:
            body["env"] = {key: dict(values) for key, values in env.items()}
        answer = await self._call("createDeployment", body=body)
        if not isinstance(answer, dict) or "id" not in answer:
            raise PermanentError(f"createDeployment {name} answered without a deployment id")
        return answer

    async def bounce(self, deployment_id: str, components: Sequence[str] | None) -> None:
        body = {"entities": [entity(c) for c in components or ()]}
        await self._call("bounceDeployment", path={"id": deployment_id}, body=body)

    async def hot_load(
        self, deployment_id: str, package: str, version: str, targets: Sequence[str]
    ) -> None:
        body = {"package": package, "version": version, "targets": list(targets)}
        await self._call("patchDeploymentRuntime", path={"id": deployment_id}, body=body)

    async def delete_deployment(self, deployment_id: str, *, cleanup: bool) -> None:
        await self._call(
            "deleteDeployment",
            path={"id": deployment_id},
            params={"cleanup": "true" if cleanup else "false"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def _list(answer: Any, operation: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list):
        raise PermanentError(f"{operation} answered with something other than a list")
    return [item for item in answer if isinstance(item, dict)]


def missing(live: Any) -> list[str]:
    """The operations the provider uses that a live OpenAPI description lacks, matched by
    method and path (path parameter names and a `/packagemanager` prefix aside: a service may
    describe itself from its own root)."""
    found = {_shape(op.method, op.path) for op in schemas.operations(live).values()}
    absent = []
    for name in USED:
        op = OPERATIONS[name]
        if _shape(op.method, op.path) not in found:
            absent.append(f"{op.method} {op.path} ({name})")
    return absent


def _shape(method: str, path: str) -> tuple[str, str]:
    path = path.removeprefix("/packagemanager")
    return method.upper(), re.sub(r"\{[^}]*\}", "{}", path.rstrip("/"))
