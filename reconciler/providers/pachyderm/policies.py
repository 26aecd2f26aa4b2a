"""What a change to each Pachyderm kind takes: the pure half of the provider.

What counts as a change (README, "What counts as a change"): a pipeline restarts only
when its normalised spec differs from the one pachd holds (every `update` restarts the
workers and kills running jobs, upstream issue #3092); `stopped` alone is a Stop/Start
call; `reprocessOnUpdate` only says how the next update is sent. Secrets cannot be read
back, so they are compared by the digest of their data against the last apply, and are
deleted and created again to change, then every pipeline that mounts them restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.diff import Change, DiffRules
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
from reconciler.providers.pachyderm.normal import secret_names

RESTARTS = "restarts workers and kills running jobs"
STOPPED = "spec.stopped"
KINDS = frozenset({"Project", "Repo", "Secret", "Pipeline"})

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
        if kind == "Pipeline" and decision.action == "patch":
            return Decision("patch", decision.reasons, decision.changes, restarts=restarts(changes))
        if kind == "Secret" and decision.action == "replace":
            return Decision(
                "replace", decision.reasons, decision.changes, content=frozenset({"data"})
            )
        return decision

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        if dependency.id.kind != "Secret" or dependent.id.kind != "Pipeline":
            return None
        if dependency.id.name not in secret_names(dependent.spec):
            return None
        return Bounce(None, f"secret {dependency.id.name} changed; workers read it when they start")

    def check(self, desired: Sequence[Desired], observation: Observation) -> list[Finding]:
        defined = {d.id.name for d in desired if d.id.kind == "Secret"}
        present = {rid.name for rid in observation.resources if rid.kind == "Secret"}
        findings = []
        for want in desired:
            if want.id.kind != "Pipeline":
                continue
            seen = observation.resources.get(want.id)
            status = (seen.status or "") if seen is not None else ""
            if status.startswith(("PIPELINE_CRASHING", "PIPELINE_FAILURE")):
                findings.append(
                    Finding(
                        want.id,
                        f"is not healthy on the target: {status}",
                        "fix what pachd's reason says (an image that cannot be pulled, a"
                        " missing secret key): an unchanged spec is not re-sent",
                        error=False,
                    )
                )
            for name in secret_names(want.spec):
                if name not in defined and name not in present:
                    findings.append(
                        Finding(
                            want.id,
                            f"uses Kubernetes secret '{name}', which is neither in the"
                            f" manifests nor on target '{observation.target}': pachd would"
                            " refuse the pipeline (missing Kubernetes secret)",
                            f"add a pachyderm/v1 Secret manifest named '{name}', or create"
                            " the secret on the cluster",
                        )
                    )
        return findings


def restarts(changes: Sequence[Change]) -> bool:
    """Whether the changes need a pipeline update (anything but `stopped`)."""
    return any(c.path != STOPPED for c in changes)
