"""What a change to each Pachyderm kind takes: the pure half of the provider.

What counts as a change (README, "What counts as a change"): a pipeline restarts only
when its normalised spec differs from the one pachd holds (every `update` restarts the
workers and kills running jobs, upstream issue #3092); `stopped` alone is a Stop/Start
call; `reprocessOnUpdate` only says how the next update is sent. Secrets cannot be read
back, so they are compared by the digest of their data against the last apply, and are
deleted and created again to change, then every pipeline that mounts them restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from reconciler.diff import Change, DiffRules
from reconciler.manifests import ResourceId
from reconciler.providers.base import (
    Applied,
    Bounce,
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
from reconciler.providers.pachyderm.canonical import secret_names
from reconciler.providers.pachyderm.kinds import DefaultsSpec, SecretSpec

RESTARTS = "restarts workers and kills running jobs"
OUT_OF_BAND = "out of band"
"""The status of a secret that exists but was not made through pachd (kubectl, Helm)."""
STOPPED = ("spec", "stopped")
KINDS = frozenset({"Project", "Repo", "Secret", "Pipeline", "ClusterDefaults", "ProjectDefaults"})
DEFAULTS_KINDS = frozenset({"ClusterDefaults", "ProjectDefaults"})
DEFAULTS_DIFF = DiffRules(ignored=(("regenerate",), ("reprocess",)))
_DEFAULTS_RULES = KindRules(
    diff=DEFAULTS_DIFF,
    default=FieldPolicy("spec", Policy.PATCH, "sets pachd's pipeline defaults"),
)

RULES: dict[str, KindRules] = {
    "Project": KindRules(fields=(FieldPolicy("spec.description", Policy.PATCH),)),
    "Repo": KindRules(fields=(FieldPolicy("spec.description", Policy.PATCH),)),
    "Secret": KindRules(
        fields=(
            FieldPolicy("spec.data", Policy.REPLACE, "a secret is deleted and created to change"),
            FieldPolicy("spec.type", Policy.REPLACE, "a secret is deleted and created to change"),
        ),
        sealed=("spec.data",),
    ),
    "Pipeline": KindRules(
        diff=DiffRules(
            unordered=(
                ("transform", "secrets"),
                ("transform", "imagePullSecrets"),
                ("tolerations",),
            ),
            ignored=(("reprocessOnUpdate",),),
        ),
        default=FieldPolicy("spec", Policy.PATCH, RESTARTS),
        fields=(FieldPolicy(STOPPED, Policy.PATCH, "stopped or started; nothing else moves"),),
    ),
    "ClusterDefaults": _DEFAULTS_RULES,
    "ProjectDefaults": _DEFAULTS_RULES,
}


class PachydermPolicies:
    """Implements `reconciler.providers.base.Policies` for pachd."""

    @property
    def provider(self) -> str:
        return "pachyderm"

    @property
    def kinds(self) -> frozenset[str]:
        return KINDS

    def rules(self, kind: str) -> KindRules:
        return RULES[kind]

    def classify(
        self,
        desired: Desired,
        observed: Observed,
        changes: Sequence[Change],
        applied: Applied | None,
    ) -> Decision:
        decision = classify_by_fields(self.rules(desired.id.kind), changes)
        kind = desired.id.kind
        if kind in DEFAULTS_KINDS and decision.action == "patch":
            return _defaults_decision(desired, observed, decision, self.managed_pipelines)
        if kind == "Pipeline" and decision.action == "patch":
            return Decision("patch", decision.reasons, decision.changes, restarts=restarts(changes))
        if kind == "Secret" and decision.action == "replace":
            return Decision(
                "replace", decision.reasons, decision.changes, content=frozenset({"data"})
            )
        return decision

    @property
    def managed_pipelines(self) -> frozenset[ResourceId]:
        """Pipelines the manifests hold (the provider knows them; pure use: none)."""
        return frozenset()

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        if dependency.id.kind != "Secret" or dependent.id.kind != "Pipeline":
            return None
        if dependency.id.name not in secret_names(dependent.spec):
            return None
        return Bounce(None, f"secret {dependency.id.name} changed; workers read it when they start")

    def check(self, desired: Sequence[Desired], observation: Observation) -> list[Finding]:
        defined = {d.id.name: d for d in desired if d.id.kind == "Secret"}
        secrets = {rid.name: o for rid, o in observation.resources.items() if rid.kind == "Secret"}
        findings = [
            Finding(
                want.id,
                "exists on the cluster but was made outside pachd (kubectl, Helm, an"
                " operator): reconciler neither adopts nor replaces it, since its data"
                " cannot be read back to compare, and pachd would refuse to create it again",
                "remove this Secret manifest (pipelines use the secret as it is), or delete"
                " the secret out of band so that it is created from the manifest",
            )
            for name, want in sorted(defined.items())
            if (seen := secrets.get(name)) is not None and seen.status == OUT_OF_BAND
        ]
        for want in desired:
            if want.id.kind == "Pipeline":
                findings.extend(_health(want, observation))
                findings.extend(_secret_use(want, defined, secrets, observation.target))
        return findings


def _defaults_decision(
    desired: Desired,
    observed: Observed,
    decision: Decision,
    managed: frozenset[ResourceId],
) -> Decision:
    """New defaults restart what pachd's dryRun names, and only with regenerate; without
    it nothing restarts now, and the same pipelines take them at their next update."""
    affected = sorted(observed.affects or (), key=str)

    def named(ids: Sequence[ResourceId]) -> str:
        shown = [f"{r.name}{'' if r in managed else ' (unmanaged)'}" for r in ids[:10]]
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        return ", ".join(shown) + more

    model = cast(DefaultsSpec, desired.model)
    regenerate = model.regenerate
    if observed.affects is None:
        note = "pachd did not say which pipelines the new defaults change"
    elif not affected:
        note = "no pipeline's effective spec changes"
    elif regenerate:
        reprocessed = " and reprocesses their data" if model.reprocess else ""
        note = f"regenerate: pachd restarts {len(affected)} pipeline(s){reprocessed}: "
        note += named(affected)
    else:
        note = (
            f"no restart now (regenerate: false); {len(affected)} pipeline(s) take the new"
            f" defaults at their next update: {named(affected)}"
        )
    return Decision(
        "patch",
        (*decision.reasons, note),
        decision.changes,
        restarts=regenerate and bool(affected),
    )


def _health(want: Desired, observation: Observation) -> list[Finding]:
    seen = observation.resources.get(want.id)
    status = (seen.status or "") if seen is not None else ""
    if not status.startswith(("PIPELINE_CRASHING", "PIPELINE_FAILURE")):
        return []
    return [
        Finding(
            want.id,
            f"is not healthy on the target: {status}",
            "fix what pachd's reason says (an image that cannot be pulled, a missing"
            " secret key): an unchanged spec is not re-sent",
            error=False,
        )
    ]


def _secret_use(
    want: Desired,
    defined: Mapping[str, Desired],
    secrets: Mapping[str, Observed],
    target: str,
) -> list[Finding]:
    """api_server.go validateSecret: only `transform.secrets` must exist when a pipeline
    is created (any secret of the namespace), and a mount with `envVar` needs a `key` the
    secret has; image pull and egress secrets are looked up only when pods start."""
    findings = []
    transform = want.spec.get("transform") or {}
    mounted = {str(m.get("name")): m for m in transform.get("secrets") or () if m.get("name")}
    for name in secret_names(want.spec):
        manifest, seen = defined.get(name), secrets.get(name)
        if manifest is None and seen is None:
            if name in mounted:
                findings.append(
                    Finding(
                        want.id,
                        f"mounts Kubernetes secret '{name}', which is neither in the manifests"
                        f" nor on target '{target}': pachd would refuse the pipeline (missing"
                        " Kubernetes secret)",
                        f"add a pachyderm/v1 Secret manifest named '{name}', or create the"
                        " secret on the cluster",
                    )
                )
            else:
                findings.append(
                    Finding(
                        want.id,
                        f"uses Kubernetes secret '{name}' (image pull or egress), which is"
                        f" neither in the manifests nor on target '{target}': pachd accepts"
                        " the pipeline, but its pods will fail when they need it",
                        f"create the secret '{name}', or add a Secret manifest for it",
                        error=False,
                    )
                )
            continue
        if manifest is None and seen is not None and seen.status == OUT_OF_BAND:
            findings.append(
                Finding(
                    want.id,
                    f"uses Kubernetes secret '{name}', which exists on the cluster but is not"
                    " managed here (made outside pachd)",
                    error=False,
                )
            )
        mount = mounted.get(name)
        key = str(mount.get("key") or "") if mount is not None else ""
        data = cast(SecretSpec, manifest.model).data if manifest is not None else None
        if mount is not None and mount.get("envVar") and data is not None and key not in data:
            findings.append(
                Finding(
                    want.id,
                    f"reads key '{key}' of secret '{name}', which its manifest does not hold:"
                    f" pachd would refuse the pipeline (Kubernetes secret {name} missing key"
                    f" {key})",
                    f"add '{key}' to the data of Secret '{name}', or fix the key",
                )
            )
    return findings


def restarts(changes: Sequence[Change]) -> bool:
    """Whether the changes need a pipeline update (anything but `stopped`)."""
    return any(c.path != STOPPED for c in changes)
