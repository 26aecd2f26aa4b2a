"""Layer 2: the plan, from desired resources and an observation of the targets. Pure.

Rule: imports `reconciler.errors`, `reconciler.manifests`, `reconciler.graph`,
`reconciler.diff` and `reconciler.providers.base` (the protocol, for the providers'
pure policies); no I/O. The plan is plain data: it serialises to the JSON of DESIGN.md
section 3 and back, and `apply --plan FILE` executes exactly what it holds.

How a plan is made:
1. Each desired resource in scope is compared with its observation: absent means
   create; otherwise the provider's rules diff the specs (write-only fields by digest
   against the inventory) and its policies classify the changes into patch, replace
   or noop.
2. A content change of a dependency (a package re-pushed under the same version, a
   secret's data) bounces the dependents whose provider says they load it at start,
   and only the components it names.
3. Owned resources (the inventory) that left the manifests are deleted when pruning is
   on, subject to every guard of DESIGN.md section 4; otherwise they are warnings.
4. Each action waits for the nearest changed resources it depends on (through noops);
   a delete waits for whatever on the platform still uses the resource. Steps number
   the waves of that order.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import plan_file
from reconciler.diff import Change, DiffRules, by_path, diff, digest, path_of
from reconciler.graph import Graph
from reconciler.manifests import ResourceId
from reconciler.manifests.values import REDACTED
from reconciler.providers.base import (
    ACTIONS,
    ActionName,
    Applied,
    Bounce,
    Decision,
    Desired,
    KindRules,
    Observation,
    Observed,
    Policies,
    sealed_digests,
)


@dataclass(frozen=True, slots=True)
class Source:
    path: str
    revision: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    select: tuple[str, ...] = ()
    with_dependencies: bool = True
    """`--select` pulls in what the selection depends on; `--no-deps` does not."""
    prune: bool = False
    max_deletes: int = 10
    allow_mass_delete: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "select": list(self.select),
            "with_dependencies": self.with_dependencies,
            "prune": self.prune,
            "max_deletes": self.max_deletes,
            "allow_mass_delete": self.allow_mass_delete,
        }


@dataclass(frozen=True, slots=True)
class Binding:
    """What a saved plan may be applied to: the state it was made against (its lineage
    and the digest of the inventory it read) and the targets it observed."""

    lineage: str | None = None
    inventory: str | None = None
    targets: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "inventory": self.inventory,
            "targets": list(self.targets),
        }


@dataclass(frozen=True, slots=True)
class Action:
    id: ResourceId
    action: ActionName
    reasons: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    depends_on: tuple[ResourceId, ...] = ()
    step: int = 0
    bounce: Bounce | None = None
    restarts: bool = False
    adopt: bool = False
    delete_before_replace: bool = True
    desired_digest: str | None = None
    """Of the normalised desired spec: `apply --plan` refuses if the manifests moved."""
    observed_digest: str | None = None
    """Of the observed spec: `apply --plan` refuses if the live state moved."""

    @property
    def mutates(self) -> bool:
        return self.action != "noop"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "target": self.id.target,
            "kind": self.id.kind,
            "name": self.id.name,
            "action": self.action,
            "reasons": list(self.reasons),
            "changes": [c.to_json() for c in self.changes],
            "depends_on": [str(d) for d in self.depends_on],
            "step": self.step,
        }
        if self.bounce is not None:
            components = None if self.bounce.components is None else list(self.bounce.components)
            data["bounce"] = {"components": components, "reason": self.bounce.reason}
        if self.restarts:
            data["restarts"] = True
        if self.adopt:
            data["adopt"] = True
        if self.action == "replace":
            data["delete_before_replace"] = self.delete_before_replace
        data["desired_digest"] = self.desired_digest
        data["observed_digest"] = self.observed_digest
        return data


@dataclass(frozen=True, slots=True)
class Forget:
    """An owned resource dropped from the inventory without a call: orphaned on purpose
    (`deletionPolicy: Orphan`) or already gone from its target."""

    id: ResourceId
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """A warning or an error of a plan, with what it is about: a resource, or a target
    (a kind it could not list in full). Shown as its message."""

    message: str
    id: ResourceId | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.target is None and self.id is not None:
            object.__setattr__(self, "target", self.id.target)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Plan:
    source: Source
    actions: tuple[Action, ...]
    forget: tuple[Forget, ...] = ()
    warnings: tuple[Note, ...] = ()
    errors: tuple[Note, ...] = ()
    """Why this plan must not be applied (protect, guards, immutable fields)."""
    options: PlanOptions = PlanOptions()
    binding: Binding = Binding()
    fingerprint: str = field(default="", compare=False)
    """`hmac-sha256:...` under the state's key once signed (`signed`); until then the
    unkeyed digest of the content, which tells nothing about who wrote it."""

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for action in self.actions:
            counts[action.action] += 1
        return counts

    @property
    def pending(self) -> bool:
        """Whether applying would change anything, on a platform or in the inventory."""
        return bool(self.forget) or any(a.mutates or a.adopt for a in self.actions)

    def by_id(self) -> dict[ResourceId, Action]:
        return {a.id: a for a in self.actions}

    def holding(self, targets: frozenset[str]) -> Plan:
        """This plan without what it would do on `targets` (automation suspended there),
        nor anything that waits for such an action; the plan says what it held back."""
        held = {a.id for a in self.actions if a.id.target in targets and a.mutates}
        changed = True
        while changed:  # what waits for a held action is held too
            changed = False
            for action in self.actions:
                if action.id not in held and any(d in held for d in action.depends_on):
                    held.add(action.id)
                    changed = True
        notes = [
            Note(
                f"{rid} has a change planned, held back: automation is suspended on"
                f" {rid.target}" + ("" if rid.target in targets else " (it waits for it)"),
                rid,
            )
            for rid in sorted(held, key=str)
        ]
        return replace(
            self,
            actions=tuple(a for a in self.actions if a.id not in held),
            forget=tuple(f for f in self.forget if f.id.target not in targets),
            warnings=(*self.warnings, *notes),
        )

    def to_json(self) -> dict[str, Any]:
        body = self._body()
        body["fingerprint"] = self.fingerprint or _fingerprint(body)
        return body

    def _body(self) -> dict[str, Any]:
        return {
            "format_version": plan_file.FORMAT_VERSION,
            "source": {
                "path": self.source.path,
                "revision": self.source.revision,
                "profile": self.source.profile,
            },
            "options": self.options.to_json(),
            "state": self.binding.to_json(),
            "summary": self.summary(),
            "actions": [a.to_json() for a in self.actions],
            "forget": [{"id": str(f.id), "reason": f.reason} for f in self.forget],
            "warnings": [str(w) for w in self.warnings],
            "errors": [str(e) for e in self.errors],
        }

    def signed(self, key: bytes) -> Plan:
        """This plan with an HMAC of its content under the state's `key`."""
        return replace(self, fingerprint=_signature(self._body(), key))

    def verify(self, key: bytes) -> bool:
        """Whether `fingerprint` is this content's HMAC under `key` (constant time)."""
        return hmac.compare_digest(self.fingerprint, _signature(self._body(), key))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @staticmethod
    def from_json(data: Any, file: str = "plan") -> Plan:
        """A plan read back from a file (`plan_file` checks its format); InputError,
        naming `file`, when it is not a plan of this format or holds anything its content
        does not say the same way when written again. Whether it was signed by the state
        it is applied to is `verify`'s question: that needs the state's key."""
        parsed = plan_file.parse(data, file)
        source = parsed.source
        options = parsed.options
        try:
            plan = Plan(
                source=Source(source.path, source.revision, source.profile),
                actions=tuple(_action(a) for a in parsed.actions),
                forget=tuple(Forget(_parse_id(f.id), f.reason) for f in parsed.forget),
                warnings=tuple(Note(w) for w in parsed.warnings),
                errors=tuple(Note(e) for e in parsed.errors),
                options=PlanOptions(
                    tuple(options.select),
                    options.with_dependencies,
                    options.prune,
                    options.max_deletes,
                    options.allow_mass_delete,
                ),
                binding=Binding(
                    parsed.state.lineage, parsed.state.inventory, tuple(parsed.state.targets)
                ),
                fingerprint=parsed.fingerprint,
            )
        except ValueError as exc:
            raise plan_file.refused(file, str(exc)) from None
        body = {k: v for k, v in data.items() if k != "fingerprint"}
        if json.dumps(plan._body(), sort_keys=True) != json.dumps(body, sort_keys=True):
            raise plan_file.refused(
                file, "its content is not what reconciler writes (was it edited?)"
            )
        return plan

    def with_fingerprint(self) -> Plan:
        return replace(self, fingerprint=_fingerprint(self._body()))


def _fingerprint(body: Mapping[str, Any]) -> str:
    return digest(dict(body))


def _signature(body: Mapping[str, Any], key: bytes) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "hmac-sha256:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _action(data: plan_file.ActionModel) -> Action:
    bounce = data.bounce
    return Action(
        id=_parse_id(data.id),
        action=data.action,
        reasons=tuple(data.reasons),
        # A saved plan's changes are for reading (every decision is made on a fresh plan,
        # `Session.replan`): each path is kept as the one text part it was written as,
        # which writes back the very same text whatever its keys hold (dots, brackets).
        changes=tuple(Change((c.path,), c.op, c.old, c.new) for c in data.changes),
        depends_on=tuple(_parse_id(d) for d in data.depends_on),
        step=data.step,
        bounce=None
        if bounce is None
        else Bounce(None if bounce.components is None else tuple(bounce.components), bounce.reason),
        restarts=data.restarts,
        adopt=data.adopt,
        delete_before_replace=data.delete_before_replace,
        desired_digest=data.desired_digest,
        observed_digest=data.observed_digest,
    )


def _parse_id(text: str) -> ResourceId:
    rid = ResourceId.parse(text)
    if rid is None:
        raise ValueError(f"'{text}' is not a resource id")
    return rid


# --- making a plan ---------------------------------------------------------------------


@dataclass
class _Draft:
    action: ActionName
    reasons: list[str]
    changes: tuple[Change, ...] = ()
    bounce: Bounce | None = None
    restarts: bool = False
    adopt: bool = False
    delete_before_replace: bool = True
    content: frozenset[str] = frozenset()
    desired_digest: str | None = None
    observed_digest: str | None = None


def make_plan(
    desired: Mapping[ResourceId, Desired],
    graph: Graph,
    observations: Mapping[str, Observation],
    policies: Mapping[str, Policies],
    inventory: Mapping[ResourceId, Applied],
    options: PlanOptions = PlanOptions(),
    source: Source = Source("."),
) -> Plan:
    """The plan that takes the observed targets to the desired state.

    `desired` and `graph` hold every resource of the manifests; `observations` and
    `policies` are keyed by target and cover every target of `desired` and of the
    inventory that is still configured.
    """
    warnings: list[Note] = []
    errors: list[Note] = []
    order = graph.order()
    if options.select:
        scope = graph.select(options.select, with_dependencies=options.with_dependencies)
    else:
        scope = set(order)
    in_scope = [rid for rid in order if rid in scope]

    drafts: dict[ResourceId, _Draft] = {}
    for rid in in_scope:
        drafts[rid] = _draft(
            desired[rid], observations[rid.target], policies[rid.target], inventory.get(rid), errors
        )

    _propagate_bounces(in_scope, drafts, desired, graph, policies, scope, warnings)

    for target in sorted({rid.target for rid in in_scope}):
        wanted = [desired[rid] for rid in in_scope if rid.target == target]
        for finding in policies[target].check(wanted, observations[target]):
            where = f"{finding.id}: " if finding.id else f"target {target}: "
            text = where + finding.message + (f" ({finding.hint})" if finding.hint else "")
            (errors if finding.error else warnings).append(Note(text, finding.id, target))
        for kind, why in sorted(observations[target].incomplete.items()):
            text = f"{target}: {kind} could not be listed in full ({why}); no deletes"
            warnings.append(Note(text, target=target))

    deletes, forget = _prunes(desired, observations, policies, inventory, options, warnings, errors)
    actions = _order(in_scope, drafts, deletes, graph, observations)
    _protect(actions, desired, errors)
    plan = Plan(
        source, tuple(actions), tuple(forget), tuple(warnings), tuple(errors), options=options
    )
    return plan.with_fingerprint()


def _draft(
    want: Desired,
    observation: Observation,
    policies: Policies,
    applied: Applied | None,
    errors: list[Note],
) -> _Draft:
    rid = want.id
    desired_digest = digest(want.spec)
    observed = observation.resources.get(rid)
    if observed is None:
        reason = (
            "not found on target"
            if applied is None
            else "created by reconciler before, but no longer on the target (deleted"
            " outside reconciler?)"
        )
        rules = policies.rules(rid.kind)
        # Write-only fields never show, even written in clear in a manifest.
        hidden = tuple((path.removeprefix("spec."),) for path in rules.sealed)
        shown = (
            *diff(want.spec, {}, DiffRules(ignored=hidden), prefix=("spec",)),
            *(
                Change(path_of(path), "add", None, REDACTED)
                for path in sealed_digests(want.spec, rules)
            ),
        )
        return _Draft("create", [reason], tuple(by_path(shown)), desired_digest=desired_digest)
    changes = compare(want, observed, policies, applied)
    decision: Decision = policies.classify(want, observed, changes, applied)
    if decision.blocked:
        errors.append(Note(f"{rid}: {decision.blocked}", rid))
    draft = _Draft(
        decision.action,
        list(decision.reasons),
        decision.changes,
        bounce=decision.bounce,
        restarts=decision.restarts,
        adopt=applied is None,
        delete_before_replace=decision.delete_before_replace,
        content=decision.content if decision.action != "noop" else frozenset(),
        desired_digest=desired_digest,
        observed_digest=digest(observed.spec),
    )
    if draft.adopt:
        draft.reasons.append("exists on target: adopted into the inventory")
    return draft


def compare(
    want: Desired, observed: Observed, policies: Policies, applied: Applied | None
) -> list[Change]:
    """The changes from `observed` to `want`: write-only fields by digest, fields the
    platform does not show against what was last applied (the inventory)."""
    rules = policies.rules(want.id.kind)
    shown: Mapping[str, Any] = observed.spec
    if rules.remembered:
        last = applied.spec if applied is not None else {}
        shown = {k: v for k, v in observed.spec.items() if f"spec.{k}" not in rules.remembered}
        for path in rules.remembered:
            key = path.removeprefix("spec.")
            if key in last:
                shown[key] = last[key]
    changes = diff(want.spec, shown, _compared(rules), prefix=("spec",))
    known = applied.fingerprints if applied is not None else {}
    for path, value in sealed_digests(want.spec, rules).items():
        if known.get(path) != value:
            old = REDACTED if path in known else "(not known)"
            changes.append(Change(path_of(path), "change", old, REDACTED))
    return by_path(changes)


@functools.lru_cache(maxsize=64)
def _compared(rules: KindRules) -> DiffRules:
    """The kind's diff rules, without its write-only fields (they compare by digest)."""
    sealed_keys = tuple((path.removeprefix("spec."),) for path in rules.sealed)
    return DiffRules(rules.diff.unordered, (*rules.diff.ignored, *sealed_keys))


def _propagate_bounces(
    in_scope: Sequence[ResourceId],
    drafts: dict[ResourceId, _Draft],
    desired: Mapping[ResourceId, Desired],
    graph: Graph,
    policies: Mapping[str, Policies],
    scope: set[ResourceId],
    warnings: list[Note],
) -> None:
    for rid in in_scope:
        draft = drafts[rid]
        if not draft.content:
            continue
        decision = Decision(
            "replace" if draft.action == "replace" else "patch", content=draft.content
        )
        for dependent in graph.dependents(rid):
            bounce = policies[dependent.target].bounces(desired[rid], decision, desired[dependent])
            if bounce is None:
                continue
            if dependent not in scope:
                warnings.append(
                    Note(
                        f"{dependent} loads content of {rid}, which changes, but is not"
                        " selected: it is not bounced",
                        dependent,
                    )
                )
                continue
            _add_bounce(drafts[dependent], bounce)


def _add_bounce(draft: _Draft, bounce: Bounce) -> None:
    if draft.action in ("create", "replace") or draft.restarts:
        return  # it starts afresh anyway
    draft.bounce = bounce if draft.bounce is None else draft.bounce.merge(bounce)
    if draft.action == "noop":
        draft.action = "bounce"
        draft.reasons = [r for r in draft.reasons if "adopted" in r]
    if bounce.reason not in draft.reasons:
        draft.reasons.append(bounce.reason)


def _prunes(
    desired: Mapping[ResourceId, Desired],
    observations: Mapping[str, Observation],
    policies: Mapping[str, Policies],
    inventory: Mapping[ResourceId, Applied],
    options: PlanOptions,
    warnings: list[Note],
    errors: list[Note],
) -> tuple[list[tuple[ResourceId, _Draft]], list[Forget]]:
    deletes: list[tuple[ResourceId, _Draft]] = []
    forget: list[Forget] = []
    gone = sorted((rid for rid in inventory if rid not in desired), key=str)
    unconfigured = sorted({rid.target for rid in gone if rid.target not in observations})
    for target in unconfigured:
        count = sum(1 for rid in gone if rid.target == target)
        warnings.append(
            Note(
                f"{count} owned resource(s) on target '{target}', which is no longer"
                " configured: left alone",
                target=target,
            )
        )
    gone = [rid for rid in gone if rid.target in observations]
    if gone and options.select:
        warnings.append(
            Note(
                f"{len(gone)} owned resource(s) left the manifests; not pruned while"
                " --select limits the run"
            )
        )
        return [], []
    for rid in gone:
        observation = observations[rid.target]
        applied = inventory[rid]
        observed = observation.resources.get(rid)
        if observation.incomplete:
            # What is unseen may still use what would be deleted: no deletes on the target.
            warnings.append(
                Note(
                    f"{rid} left the manifests; kept while {rid.target} cannot be observed in full",
                    rid,
                )
            )
            continue
        why = "owned by reconciler and no longer in the manifests (prune)"
        if observed is None and rid in observation.remains:
            cleanup = policies[rid.target].rules(rid.kind).cleanup
            if cleanup is not None and applied.spec.get(cleanup.removeprefix("spec.")) is True:
                observed = observation.remains[rid]
                why = (
                    f"stopped outside reconciler and no longer in the manifests; {cleanup}"
                    " as last applied asks that what it left behind be deleted (prune)"
                )
            else:
                forget.append(
                    Forget(
                        rid,
                        "left the manifests and was stopped on the target; what it"
                        " left behind stays",
                    )
                )
                continue
        if observed is None:
            forget.append(Forget(rid, "left the manifests and is already gone from the target"))
            continue
        if not options.prune:
            warnings.append(
                Note(
                    f"{rid} is owned but no longer in the manifests: delete it with --prune"
                    " (or prune: true)",
                    rid,
                )
            )
            continue
        if applied.deletion_policy == "Orphan":
            forget.append(
                Forget(rid, "deletionPolicy Orphan: left on the target, no longer managed")
            )
            continue
        if applied.protect:
            errors.append(
                Note(
                    f"{rid} is protected and left the manifests: restore its manifest, or"
                    " set protect: false and apply before removing it",
                    rid,
                )
            )
            continue
        deletes.append(
            (
                rid,
                _Draft(
                    "delete",
                    [why],
                    observed_digest=digest(observed.spec),
                ),
            )
        )
    deletes = _unmanaged_users(deletes, desired, observations, inventory, errors)
    if len(deletes) > options.max_deletes:
        errors.append(
            Note(
                f"this plan deletes {len(deletes)} resources, more than --max-deletes"
                f" {options.max_deletes}: check the manifests, or raise --max-deletes"
            )
        )
    if not options.allow_mass_delete:
        # What would still be owned once the plan ran: what the manifests keep, and what
        # the inventory keeps besides deletes and forgets. Nothing left while something
        # is deleted is a mass delete, however many resources were orphaned or already
        # gone (a target whose manifests all vanished: a wrong folder, a bad merge).
        released = {f.id for f in forget}
        for target in sorted({rid.target for rid, _ in deletes}):
            doomed = {rid for rid, _ in deletes if rid.target == target}
            kept = {rid for rid in desired if rid.target == target} | {
                rid
                for rid in inventory
                if rid.target == target and rid not in doomed and rid not in released
            }
            if not kept:
                errors.append(
                    Note(
                        f"this plan deletes every resource reconciler still owns on target"
                        f" '{target}' ({len(doomed)}) and keeps none: if that is meant, pass"
                        " --allow-mass-delete",
                        target=target,
                    )
                )
    return deletes, forget


def _unmanaged_users(
    deletes: list[tuple[ResourceId, _Draft]],
    desired: Mapping[ResourceId, Desired],
    observations: Mapping[str, Observation],
    inventory: Mapping[ResourceId, Applied],
    errors: list[Note],
) -> list[tuple[ResourceId, _Draft]]:
    """Deletes of what a resource we do not manage still uses, refused: deleting it would
    break that resource, which no manifest speaks for (pachd's DeletePipeline of a
    pipeline another one reads stops it, then fails, leaving it stopped)."""
    doomed = {rid for rid, _ in deletes}
    users: dict[ResourceId, list[ResourceId]] = {}
    for observation in observations.values():
        for observed in observation.resources.values():
            if observed.id in desired or observed.id in inventory or observed.id in doomed:
                continue
            for used in observed.depends_on:
                if used in doomed:
                    users.setdefault(used, []).append(observed.id)
    kept = []
    for rid, draft in deletes:
        readers = sorted(users.get(rid, ()), key=str)
        if readers:
            named = ", ".join(str(r) for r in readers[:3])
            more = f" and {len(readers) - 3} more" if len(readers) > 3 else ""
            errors.append(
                Note(
                    f"{rid} left the manifests, but {named}{more}, which reconciler does"
                    " not manage, still uses it: it is not deleted (the platform would"
                    " break or half-delete it). Remove or adopt the user first, or restore"
                    " the manifest",
                    rid,
                )
            )
        else:
            kept.append((rid, draft))
    return kept


def _order(
    in_scope: Sequence[ResourceId],
    drafts: Mapping[ResourceId, _Draft],
    deletes: Sequence[tuple[ResourceId, _Draft]],
    graph: Graph,
    observations: Mapping[str, Observation],
) -> list[Action]:
    waits: dict[ResourceId, set[ResourceId]] = {}
    # What each resource must wait for, through noops: the nearest changed dependencies.
    reach: dict[ResourceId, set[ResourceId]] = {}
    for rid in in_scope:
        needed: set[ResourceId] = set()
        for dependency in graph.dag.predecessors(rid):
            if dependency not in drafts:
                continue  # outside the selection (--no-deps)
            if drafts[dependency].action != "noop":
                needed.add(dependency)
            else:
                needed |= reach[dependency]
        reach[rid] = needed
        waits[rid] = needed if drafts[rid].action != "noop" else set()

    # A delete waits for everything on the platform that still uses what it deletes.
    deleting = {rid for rid, _ in deletes}
    users: dict[ResourceId, set[ResourceId]] = {}
    for observation in observations.values():
        cleaned = (r for rid, r in observation.remains.items() if rid in deleting)
        for observed in (*observation.resources.values(), *cleaned):
            for used in observed.depends_on:
                if used in deleting:
                    users.setdefault(used, set()).add(observed.id)
    for rid, _ in deletes:
        waits[rid] = {
            user
            for user in users.get(rid, ())
            if user in deleting or (user in drafts and drafts[user].action != "noop")
        }

    steps: dict[ResourceId, int] = {}

    def step(rid: ResourceId, trail: frozenset[ResourceId] = frozenset()) -> int:
        if rid not in steps:
            before = [w for w in waits[rid] if w not in trail]
            steps[rid] = 1 + max((step(w, trail | {rid}) for w in before), default=-1)
        return steps[rid]

    position = {rid: index for index, rid in enumerate(in_scope)}
    for index, (rid, _) in enumerate(sorted(deletes, key=lambda d: str(d[0]))):
        position[rid] = len(in_scope) + index
    every = [*((rid, drafts[rid]) for rid in in_scope), *deletes]
    actions = [
        Action(
            id=rid,
            action=draft.action,
            reasons=tuple(draft.reasons),
            changes=draft.changes,
            depends_on=tuple(sorted(waits[rid], key=lambda w: position[w])),
            step=step(rid),
            bounce=draft.bounce,
            restarts=draft.restarts,
            adopt=draft.adopt,
            delete_before_replace=draft.delete_before_replace,
            desired_digest=draft.desired_digest,
            observed_digest=draft.observed_digest,
        )
        for rid, draft in every
    ]
    actions.sort(key=lambda a: (a.step, position[a.id]))
    return actions


def _protect(
    actions: Sequence[Action], desired: Mapping[ResourceId, Desired], errors: list[Note]
) -> None:
    """A replace of a protected resource fails the plan (protected deletes never reach
    here: pruning refuses them with their own message)."""
    for action in actions:
        if action.action == "replace" and desired[action.id].resource.metadata.protect:
            errors.append(
                Note(
                    f"{action.id} is protected (protect: true) and this plan would replace"
                    f" it: {'; '.join(action.reasons)}. Undo the change, or set protect:"
                    " false first",
                    action.id,
                )
            )
