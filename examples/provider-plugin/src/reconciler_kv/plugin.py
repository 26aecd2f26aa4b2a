"""What reconciler reads of this plugin: the `kv` provider's kinds, target and calls.

`pyproject.toml` names `PLUGIN` under the entry point group `reconciler.providers`;
reconciler then accepts `apiVersion: kv/v1` manifests and `provider: kv` targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal, cast

from pydantic import Field, TypeAdapter

from reconciler.manifests.catalog import KindInfo, no_references
from reconciler.manifests.config import TargetConfig
from reconciler.manifests.model import Model, Value, name_rule
from reconciler.manifests.resources import Reference
from reconciler.providers.plugin import ProviderPlugin, deferred

API_VERSION = "kv/v1"

KvName = Annotated[
    str,
    name_rule(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z",
        40,
        "kv name",
        "use lowercase letters, digits and '-', start and end with a letter or digit, at most 40",
    ),
]
Name: TypeAdapter[str] = TypeAdapter(KvName)


class KvTarget(TargetConfig):
    """A `provider: kv` target in reconciler.yaml."""

    provider: Literal["kv"]
    token: Value | None = None
    """Sent as `Authorization: Bearer ...`; normally ${env:KV_TOKEN}."""


class BucketSpec(Model):
    description: str = ""


class KeySpec(Model):
    bucket: KvName
    """The Bucket (a manifest of its own) this key lives in."""
    value: str = Field(max_length=4096)


def _key_references(spec: Model, scope: str | None, name: str) -> Iterator[Reference]:
    key = cast(KeySpec, spec)
    yield Reference(
        ("Bucket",),
        key.bucket,
        ("spec", "bucket"),
        "bucket",
        hint=f"add a kv/v1 Bucket manifest named '{key.bucket}', or fix spec.bucket",
    )


KINDS = (
    KindInfo(API_VERSION, "Bucket", "kv", BucketSpec, Name, no_references, spec_required=False),
    KindInfo(API_VERSION, "Key", "kv", KeySpec, Name, _key_references),
)


PLUGIN = ProviderPlugin(
    name="kv",
    target=KvTarget,
    kinds=KINDS,
    # Imported when first used: validating manifests needs none of the HTTP side.
    policies=deferred("reconciler_kv.provider:KvPolicies"),
    connect=deferred("reconciler_kv.provider:connect"),
    sandbox="reconciler_kv.server:embedded",
)
