"""What a change to a kdb Insights Package or Deployment takes: the pure half.

Package (`{version, content, components}`; `content` is the content digest of the
package's files, computed by us and remembered in the state store, never asked of the
server; `components` comes from its manifest.yaml and is not compared):
- same version, other content: the artifact is pushed again with `force`; the
  deployments running that version then bounce, and only the components whose files
  changed (`Desired.loaded_by`, from the package's manifest.yaml); a change no component
  claims, or content changed behind reconciler's back, bounces every component.
- a new version: pushed and registered beside the old one (create before delete); the
  old version goes once the deployments have moved to the new one, and only if
  reconciler pushed it.

Deployment (`{package, version, components, env}`, plus reconciler's own
`updateStrategy` and `cleanupOnDelete`, never compared with the platform; `components`
and `env` are compared with what reconciler last deployed, not with the server's
answer, where KX documents neither):
- a version change is a hot-load (`updateStrategy: hotload`, nothing restarts) or a
  redeploy: teardown WITHOUT data cleanup, then create;
- an `env` or `components` change is a redeploy;
- `package` cannot change: deploy the other package under another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

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
from reconciler.providers.insights.kinds import DeploymentSpec

KINDS = frozenset({"Package", "Deployment"})
OURS = (
    "updateStrategy",
    "cleanupOnDelete",
    "hotloadTargets",
    "hotloadGlobalProcesses",
)
"""Deployment fields that tell reconciler how to act; the platform never holds them."""
UNKNOWN = "*"
"""Content key of a change whose files cannot be told apart: every component bounces."""
REDEPLOY = "redeployed: torn down (persisted data kept) and created again"

RULES: dict[str, KindRules] = {
    "Package": KindRules(
        diff=DiffRules(ignored=(("otherVersions",), ("components",))),
        fields=(
            FieldPolicy(
                "spec.version",
                Policy.REPLACE,
                "a new package version, pushed beside the old one; the old one is removed"
                " once no deployment runs it, if reconciler pushed it",
            ),
            FieldPolicy("spec.content", Policy.PATCH, "re-pushed under the same version (force)"),
        ),
        remembered=("spec.content",),
        delete_before_replace=False,
    ),
    "Deployment": KindRules(
        diff=DiffRules(
            unordered=(("components",),),
            ignored=tuple((key,) for key in OURS),
        ),
        # KX documents neither in the answers: what was deployed is remembered. (Its
        # package is its identity: a deployment of another package is another one.)
        remembered=("spec.env", "spec.components"),
        # A deployment torn down outside reconciler keeps its data (observed as remains):
        # once it leaves the manifests, the data goes if cleanupOnDelete asked
        # (client.deployments.cleanup, "Remove persisted data without tearing down").
        cleanup="spec.cleanupOnDelete",
    ),
}


def strategy(desired: Desired) -> str:
    return cast(DeploymentSpec, desired.model).update_strategy


ALONE = ("pipeline", "database")
"""Component types the Package Manager tears down one at a time (`component=pipelines`
or `databases` with `component_id`): the others go with the whole deployment."""


def alone(component: str) -> bool:
    return component.partition(":")[0] in ALONE


def component_change(changes: Sequence[Change]) -> tuple[list[str], list[str]] | None:
    """When `components` alone changed, item by item, and every component removed can be
    torn down alone: (added, removed); else None (a whole redeploy)."""
    field = ("spec", "components")
    if not changes or any(not c.under(field) for c in changes):
        return None
    added: list[str] = []
    removed: list[str] = []
    for change in changes:
        if change.path == field:
            if not isinstance(change.old, list) or not isinstance(change.new, list):
                return None  # from or to "every component": what that is, the package says
            before, after = (_named(change.old), _named(change.new))
            added.extend(sorted(after - before))
            removed.extend(sorted(before - after))
        elif len(change.path) == 3 and change.op == "add" and isinstance(change.new, dict):
            added.extend(_named([change.new]))
        elif len(change.path) == 3 and change.op == "remove" and isinstance(change.old, dict):
            removed.extend(_named([change.old]))
        else:
            return None  # an entry changed in place: a whole redeploy
    if not all(alone(c) for c in removed):
        return None
    return sorted(set(added)), sorted(set(removed))


def _named(items: Sequence[object]) -> set[str]:
    return {f"{i['type']}:{i['name']}" for i in items if isinstance(i, dict)}


CODE = (".q", ".k", ".py")
"""Files a hot-load loads: q and Python sources (user-defined analytics). Any other
file of a package is configuration, except manifest.yaml, whose version changes with
every version."""


def configuration_changed(desired: Desired, applied: Applied | None) -> list[str]:
    """The package files other than code that differ from the version last deployed;
    `(not known)` when that version's files are not known. A hot-load loads code, never
    configuration (NOTES.md, "Hot-load")."""
    if applied is None or not any(k.startswith("files/") for k in applied.fingerprints):
        return ["(not known)"]
    known = applied.fingerprints
    keys = {k for k in (*desired.fingerprints, *known) if k.startswith("files/")}
    changed = {
        k.removeprefix("files/") for k in keys if desired.fingerprints.get(k) != known.get(k)
    }
    return sorted(f for f in changed if f != "manifest.yaml" and not f.endswith(CODE))


CONFIGURATION = ("package", "configuration")
"""Where classify reports the package files of components' configuration that a new
version changes (a hot-load cannot apply them)."""


def redeploys(desired: Desired, changes: Sequence[Change]) -> bool:
    """Whether the changes need the deployment torn down and created (else a hot-load,
    or a change of components one by one). A hot-load only when `updateStrategy: hotload`
    and only code changed: classify reports changed configuration as changes under
    `CONFIGURATION`."""
    if component_change(changes) is not None:
        return False
    if any(c.under(("spec", "env")) or c.under(("spec", "components")) for c in changes):
        return True
    if strategy(desired) != "hotload":
        return True
    return any(c.under(CONFIGURATION) for c in changes)


class InsightsPolicies:
    """Implements `reconciler.providers.base.Policies` for the Package Manager."""

    @property
    def provider(self) -> str:
        return "insights"

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
        if decision.action != "patch" or decision.blocked:
            return decision
        if desired.id.kind == "Package":
            content = changed_content(desired, observed, applied)
            shown = sorted(path.removeprefix("files/") for path in content if path != UNKNOWN)
            reasons = list(decision.reasons)
            if UNKNOWN in content:
                reasons.append("changed on the target since the last apply: files unknown")
            elif shown:
                reasons.append("files changed: " + ", ".join(shown[:5]))
            return Decision("patch", tuple(reasons), decision.changes, content=frozenset(content))
        version = desired.spec.get("version")
        parts = component_change(changes)
        if parts is not None:
            added, removed = parts
            why = "; ".join(
                [f"deploys {', '.join(added)}"] * bool(added)
                + [f"tears down {', '.join(removed)} (its data kept)"] * bool(removed)
            )
            why += "; the other components keep running"
            return Decision("patch", (*decision.reasons, why), decision.changes)
        changes = list(decision.changes)
        if strategy(desired) == "hotload" and any(c.under(("spec", "version")) for c in changes):
            changes.extend(
                Change((*CONFIGURATION, name), "change", "(earlier version)", "(this version)")
                for name in configuration_changed(desired, applied)
            )
        if redeploys(desired, changes):
            why = REDEPLOY
            if not any(
                c.under(("spec", "env")) or c.under(("spec", "components")) for c in changes
            ):
                if strategy(desired) == "hotload":
                    files = ", ".join(str(c.path[-1]) for c in changes if c.under(CONFIGURATION))
                    why += f" at version {version}: a hot-load loads code, and this version"
                    why += f" changes the configuration of components ({files})"
                else:
                    why += f" at version {version} (updateStrategy: redeploy)"
            return Decision("patch", (*decision.reasons, why), tuple(changes), restarts=True)
        why = f"hot-loads version {version} into the running components; nothing restarts"
        return Decision("patch", (*decision.reasons, why), decision.changes)

    def bounces(self, dependency: Desired, decision: Decision, dependent: Desired) -> Bounce | None:
        if dependency.id.kind != "Package" or dependent.id.kind != "Deployment":
            return None
        if dependent.spec.get("version") != dependency.spec.get("version"):
            return None  # it runs another version of the package
        deployed = _deployed(dependent)
        why = f"package {dependency.id.name} {dependency.spec.get('version')} was re-pushed"
        parts: set[str] = set()
        for key in decision.content:
            owners = dependency.loaded_by.get(key)
            if not owners:
                return Bounce(None, f"{why}: a change outside any component restarts them all")
            parts.update(owners)
        if deployed is not None:
            parts &= deployed
        if not parts:
            return None
        return Bounce(tuple(sorted(parts)), f"{why}: the changed files belong to these components")

    def check(self, desired: Sequence[Desired], observation: Observation) -> list[Finding]:
        findings: list[Finding] = []
        packages = {d.id.name: d for d in desired if d.id.kind == "Package"}
        for want in desired:
            if want.id.kind == "Deployment":
                findings.extend(_unknown_components(want, packages.get(str(want.spec["package"]))))
            elif want.id.kind == "Package":
                observed = observation.resources.get(want.id)
                others = list(observed.spec.get("otherVersions") or []) if observed else []
                if others:
                    findings.append(
                        Finding(
                            want.id,
                            f"the target also holds version(s) {', '.join(others)}, which"
                            " this plan leaves in place",
                            "delete them with the Package Manager once nothing runs them",
                            error=False,
                        )
                    )
        return findings


def changed_content(desired: Desired, observed: Observed, applied: Applied | None) -> set[str]:
    """The package files that differ from what reconciler last pushed, as fingerprint
    keys; unknown when it never pushed this version (adopted, or a version it had not
    pushed: nobody documents a way to ask the server what it holds)."""
    if applied is None or applied.spec.get("version") != desired.spec.get("version"):
        return {UNKNOWN}
    known = applied.fingerprints
    keys = {key for key in (*desired.fingerprints, *known) if key.startswith("files/")}
    return {key for key in keys if desired.fingerprints.get(key) != known.get(key)} or {UNKNOWN}


def _deployed(deployment: Desired) -> set[str] | None:
    components = deployment.spec.get("components")
    if components is None:
        return None
    return {f"{c['type']}:{c['name']}" for c in components}


def _unknown_components(deployment: Desired, package: Desired | None) -> list[Finding]:
    deployed = _deployed(deployment)
    if package is None or deployed is None:
        return []
    if deployment.spec.get("version") != package.spec.get("version"):
        return []
    known = set(package.spec.get("components") or ())
    missing = sorted(deployed - known)
    if not missing:
        return []
    return [
        Finding(
            deployment.id,
            f"deploys component(s) {', '.join(missing)}, which package {package.id.name}"
            " does not define",
            "components are `{type, name}` of the package's manifest.yaml: "
            + (", ".join(sorted(known)) or "it defines none"),
        )
    ]
