"""The `kv` provider: what a change takes (the policies) and the calls that make it.

A Bucket's description changes in place; a Key's value changes in place, and a Key that
moves to another bucket is deleted and created again (the store has no move). Keys are
read with one call and buckets with another, so a plan of any size costs two reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from reconciler.diff import Change
from reconciler.errors import InputError, PermanentError, Problem
from reconciler.manifests import Resource, ResourceId
from reconciler.manifests.values import VariableError, reveal
from reconciler.providers.base import (
    Applied,
    Bounce,
    Check,
    Decision,
    Desired,
    FieldPolicy,
    Finding,
    KindRules,
    Observation,
    Observed,
    Policy,
    classify_by_fields,
)
from reconciler.providers.http import HttpClient
from reconciler.providers.plugin import Connection
from reconciler.retry import Backoff
from reconciler_kv.plugin import BucketSpec, KeySpec, KvTarget

RULES = {
    "Bucket": KindRules(),
    "Key": KindRules(
        fields=(FieldPolicy("spec.bucket", Policy.REPLACE, "a key moves by delete and create"),)
    ),
}


class KvPolicies:
    """Implements `reconciler.providers.base.Policies` for the store."""

    @property
    def provider(self) -> str:
        return "kv"

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(RULES)

    def rules(self, kind: str) -> KindRules:
        return RULES[kind]

    def classify(
        self,
        desired: Desired,
        observed: Observed,
        changes: Sequence[Change],
        applied: Applied | None,
    ) -> Decision:
        return classify_by_fields(self.rules(desired.id.kind), changes)

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        return None  # nothing in the store restarts

    def check(self, desired: Sequence[Desired], observation: Observation) -> Sequence[Finding]:
        return ()


class KvProvider(KvPolicies):
    """Implements `reconciler.providers.base.Provider` over the store's HTTP API."""

    def __init__(self, target: str, http: HttpClient) -> None:
        self._target = target
        self.http = http

    @property
    def target(self) -> str:
        return self._target

    def desire(self, resource: Resource) -> Desired:
        if isinstance(resource.spec, KeySpec):
            return Desired(resource, {"bucket": resource.spec.bucket, "value": resource.spec.value})
        bucket = cast(BucketSpec, resource.spec)
        return Desired(resource, {"description": bucket.description})

    async def observe(self) -> Observation:
        buckets = await self.http.request("GET", "/v1/buckets", read=True)
        keys = await self.http.request("GET", "/v1/keys", read=True)
        found: dict[ResourceId, Observed] = {}
        for item in buckets.get("buckets", []):
            rid = ResourceId(self._target, "Bucket", item["name"])
            found[rid] = Observed(rid, {"description": item.get("description", "")})
        for item in keys.get("keys", []):
            rid = ResourceId(self._target, "Key", item["key"])
            bucket = ResourceId(self._target, "Bucket", item["bucket"])
            spec = {"bucket": item["bucket"], "value": item["value"]}
            found[rid] = Observed(rid, spec, depends_on=(bucket,))
        return Observation(self._target, found)

    async def create(self, desired: Desired) -> None:
        await self._put(desired)

    async def patch(self, desired: Desired, observed: Observed, changes: Sequence[Change]) -> None:
        await self._put(desired)

    async def bounce(self, desired: Desired, components: tuple[str, ...] | None) -> None:
        # Never planned: no field of a kv kind takes a restart and `bounces` says None.
        raise PermanentError(f"{desired.id}: the kv store has nothing to restart")

    async def delete(self, rid: ResourceId, observed: Observed, applied: Applied | None) -> None:
        if rid.kind == "Key":
            path = f"/v1/buckets/{observed.spec['bucket']}/keys/{rid.name}"
        else:
            path = f"/v1/buckets/{rid.name}"
        await self.http.request("DELETE", path)

    async def diagnose(self) -> list[Check]:
        try:
            await self.http.request("GET", "/v1/buckets", read=True)
        except Exception as exc:  # a Check says what failed; diagnose never raises
            return [Check("reachable", False, str(exc))]
        return [Check("reachable", True, "the store answered")]

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _put(self, desired: Desired) -> None:
        if desired.id.kind == "Key":
            path = f"/v1/buckets/{desired.spec['bucket']}/keys/{desired.id.name}"
            await self.http.request("PUT", path, body={"value": desired.spec["value"]})
        else:
            body = {"description": desired.spec["description"]}
            await self.http.request("PUT", f"/v1/buckets/{desired.id.name}", body=body)


def connect(connection: Connection) -> KvProvider:
    config = cast(KvTarget, connection.config)
    try:
        token = reveal(config.token) if config.token is not None else None
    except VariableError as exc:
        where = f"target '{connection.target}': token: {exc}"
        raise InputError([Problem(connection.config_file, message=where, hint=exc.hint)]) from None
    headers = {"authorization": f"Bearer {token}"} if token else {}
    http = HttpClient(
        (connection.base_url or config.url).rstrip("/"),
        platform=f"kv ({connection.target})",
        headers=lambda: headers,
        transport=connection.transport,
        kept=connection.kept,
        verify=config.ca_bundle or config.verify_tls,
        timeout=config.timeout,
        reads=Backoff(attempts=1 + config.retries, longest_wait=config.timeout),
    )
    return KvProvider(connection.target, http)
