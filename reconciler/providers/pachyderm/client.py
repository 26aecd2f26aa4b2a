"""pachd's REST gateway: one method per RPC the provider uses.

Every RPC is `POST /api/<package>.<Service>/<Method>` with the request message as JSON;
server streams answer one `{"result": ...}` per line. Bodies are built here and nowhere
else, in the camelCase form of `pachyderm_api.swagger.json`; errors come from
`reconciler.providers.http` already mapped (retryable or permanent, with pachd's message).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.errors import PermanentError
from reconciler.providers.http import HttpClient, HttpError
from reconciler.providers.pachyderm.answers import checked
from reconciler.providers.pachyderm.kinds import PACHYDERM_NAME, PACHYDERM_NAME_LIMIT

_PROJECT = re.compile(PACHYDERM_NAME)


def _project(name: str) -> dict[str, Any]:
    return {"name": name}


def _repo(project: str, name: str) -> dict[str, Any]:
    return {"name": name, "type": "user", "project": _project(project)}


def _pipeline(project: str, name: str) -> dict[str, Any]:
    return {"name": name, "project": _project(project)}


class PachdClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def _call(self, rpc: str, body: Mapping[str, Any], *, read: bool = False) -> Any:
        return checked(rpc, await self.http.post(f"/api/{rpc}", body, read=read))

    async def _stream(self, rpc: str, body: Mapping[str, Any]) -> list[Any]:
        items = await self.http.post_stream(f"/api/{rpc}", body, read=True)
        return [checked(rpc, item, item=True) for item in items]

    # --- reads: four calls observe a target ------------------------------------------

    async def list_projects(self) -> list[dict[str, Any]]:
        return await self._stream("pfs_v2.API/ListProject", {})

    async def list_repos(self, projects: Sequence[str]) -> list[dict[str, Any]]:
        """The user repos of these projects (none asked: none listed, as an empty filter
        would list every project's: pfs.proto ListRepoRequest.projects)."""
        # pachd writes these names into its SQL unquoted (pfsdb/repos.go
        # NewRepoIterator): only a name a project can have is sent; another names no
        # project, so has no repos.
        named = [p for p in projects if _PROJECT.match(p) and len(p) <= PACHYDERM_NAME_LIMIT]
        if not named:
            return []
        body = {"type": "user", "projects": [_project(p) for p in named]}
        return await self._stream("pfs_v2.API/ListRepo", body)

    async def list_secrets(self) -> list[dict[str, Any]]:
        answer = await self._call("pps_v2.API/ListSecret", {}, read=True)
        return list((answer or {}).get("secretInfo") or [])

    async def list_pipelines(self) -> list[dict[str, Any]]:
        return await self._stream("pps_v2.API/ListPipeline", {"details": True})

    async def cluster_defaults(self) -> str:
        answer = await self._call("pps_v2.API/GetClusterDefaults", {}, read=True)
        return str((answer or {}).get("clusterDefaultsJson") or "{}")

    async def project_defaults(self, project: str) -> str:
        body = {"project": _project(project)}
        answer = await self._call("pps_v2.API/GetProjectDefaults", body, read=True)
        return str((answer or {}).get("projectDefaultsJson") or "{}")

    async def set_defaults(
        self,
        project: str | None,
        defaults: Mapping[str, Any],
        *,
        regenerate: bool,
        reprocess: bool,
        dry_run: bool = False,
    ) -> list[tuple[str, str]]:
        """SetClusterDefaults (project None) or SetProjectDefaults; the (project, name) of
        every pipeline whose effective spec the new defaults change (with `regenerate`)."""
        body: dict[str, Any] = {"regenerate": regenerate, "reprocess": reprocess}
        if dry_run:
            body["dryRun"] = True
        if project is None:
            rpc = "pps_v2.API/SetClusterDefaults"
            body["clusterDefaultsJson"] = json.dumps(defaults)
        else:
            rpc = "pps_v2.API/SetProjectDefaults"
            body["project"] = _project(project)
            body["projectDefaultsJson"] = json.dumps(defaults)
        # A dry run changes nothing: a read, retried like one.
        answer = await self._call(rpc, body, read=dry_run)
        return [
            (str((p.get("project") or {}).get("name") or "default"), str(p.get("name") or ""))
            for p in (answer or {}).get("affectedPipelines") or []
        ]

    async def inspect_secret(self, name: str) -> dict[str, Any] | None:
        """Any secret of the namespace, made through pachd or not; None when missing."""
        try:
            answer = await self._call(
                "pps_v2.API/InspectSecret", {"secret": {"name": name}}, read=True
            )
        except HttpError as exc:
            if exc.status == 404 or exc.code == 5 or "not found" in str(exc):
                return None
            raise
        return dict(answer or {})

    # --- projects --------------------------------------------------------------------

    async def create_project(self, name: str, description: str, *, update: bool) -> None:
        body: dict[str, Any] = {"project": _project(name), "description": description}
        if update:
            body["update"] = True
        await self._call("pfs_v2.API/CreateProject", body)

    async def delete_project(self, name: str) -> None:
        await self._call("pfs_v2.API/DeleteProject", {"project": _project(name)})

    # --- repos -----------------------------------------------------------------------

    async def create_repo(self, project: str, name: str, description: str, *, update: bool) -> None:
        body: dict[str, Any] = {"repo": _repo(project, name), "description": description}
        if update:
            body["update"] = True
        await self._call("pfs_v2.API/CreateRepo", body)

    async def delete_repo(self, project: str, name: str) -> None:
        answer = await self._call(
            "pfs_v2.API/DeleteRepo", {"repo": _repo(project, name), "force": False}
        )
        # pachd answers deleted=false, without an error, for a missing repo and for a
        # repo the caller may not delete: never a silent success.
        if not (answer or {}).get("deleted"):
            raise PermanentError(
                f"pachd did not delete repo {project}/{name} (it answered deleted: false):"
                " it is gone already, or this token may not delete it"
            )

    # --- secrets ---------------------------------------------------------------------

    async def create_secret(self, name: str, type_: str, data: Mapping[str, str]) -> None:
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": type_,
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        }
        file = base64.b64encode(json.dumps(manifest).encode()).decode()
        await self._call("pps_v2.API/CreateSecret", {"file": file})

    async def delete_secret(self, name: str) -> None:
        await self._call("pps_v2.API/DeleteSecret", {"secret": {"name": name}})

    # --- pipelines -------------------------------------------------------------------

    async def create_pipeline(
        self, request: Mapping[str, Any], *, update: bool, reprocess: bool
    ) -> None:
        body: dict[str, Any] = {"createPipelineRequestJson": json.dumps(request)}
        if update:
            body["update"] = True
        if reprocess:
            body["reprocess"] = True
        await self._call("pps_v2.API/CreatePipelineV2", body)

    async def inspect_pipeline(self, project: str, name: str) -> dict[str, Any]:
        body = {"pipeline": _pipeline(project, name), "details": False}
        return dict(await self._call("pps_v2.API/InspectPipeline", body, read=True) or {})

    async def find_pipeline(self, project: str, name: str) -> dict[str, Any] | None:
        """InspectPipeline; None when pachd has no such pipeline (NotFound)."""
        try:
            return await self.inspect_pipeline(project, name)
        except HttpError as exc:
            if exc.status == 404 or exc.code == 5:
                return None
            raise

    async def stop_pipeline(self, project: str, name: str) -> None:
        await self._call("pps_v2.API/StopPipeline", {"pipeline": _pipeline(project, name)})

    async def start_pipeline(self, project: str, name: str) -> None:
        await self._call("pps_v2.API/StartPipeline", {"pipeline": _pipeline(project, name)})

    async def delete_pipeline(self, project: str, name: str) -> None:
        await self._call(
            "pps_v2.API/DeletePipeline", {"pipeline": _pipeline(project, name), "mustExist": True}
        )

    async def aclose(self) -> None:
        await self.http.aclose()
