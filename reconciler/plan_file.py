"""Layer 2: a saved plan file read back, by a strict model of its format.

Rule: pure; imports `reconciler.errors`, `reconciler.manifests` and pydantic. A plan file
is untrusted input (it travels between CI jobs): every field is checked for its type,
nothing unknown is accepted, and what is wrong is an `InputError` naming the field.
Whether the plan was signed by the state it is applied to is `Plan.verify`'s question.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from reconciler.errors import InputError, Problem

FORMAT_VERSION = "1"
REVISION = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?(?:\+dirty)?\Z")
"""What a saved plan may carry as its revision: a full commit id (SHA-1 or SHA-256),
`+dirty` for a local folder with uncommitted changes."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _revision(value: str) -> str:
    if not REVISION.match(value):
        raise ValueError("not a full commit id (40 or 64 hex digits)")
    return value


class SourceModel(_Strict):
    path: str
    revision: Annotated[str, AfterValidator(_revision)] | None
    profile: str | None


class OptionsModel(_Strict):
    select: list[str]
    with_dependencies: bool
    prune: bool
    max_deletes: Annotated[int, Field(ge=0)]
    allow_mass_delete: bool


class StateModel(_Strict):
    lineage: str
    inventory: str
    targets: list[str]


class ChangeModel(_Strict):
    path: str
    op: Literal["add", "remove", "change"]
    old: Any = None
    new: Any = None


class BounceModel(_Strict):
    components: list[str] | None
    reason: str = ""


class ActionModel(_Strict):
    id: str
    target: str
    kind: str
    name: str
    action: Literal["create", "patch", "bounce", "replace", "delete", "noop"]
    reasons: list[str] = []
    changes: list[ChangeModel] = []
    depends_on: list[str] = []
    step: Annotated[int, Field(ge=0)] = 0
    bounce: BounceModel | None = None
    restarts: bool = False
    adopt: bool = False
    delete_before_replace: bool = True
    desired_digest: str | None = None
    observed_digest: str | None = None


class ForgetModel(_Strict):
    id: str
    reason: str


class PlanFile(_Strict):
    format_version: Literal["1"]
    source: SourceModel
    options: OptionsModel
    state: StateModel
    summary: dict[str, int]
    actions: list[ActionModel]
    forget: list[ForgetModel] = []
    warnings: list[str] = []
    errors: list[str] = []
    fingerprint: str


HINT = "write plans with `reconciler plan --out FILE` and do not edit them"


def parse(data: Any, file: str) -> PlanFile:
    """The plan file's content checked against its format; InputError naming each field
    that is wrong."""
    try:
        return PlanFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(
                file,
                message="not a usable plan file: "
                + ".".join(str(part) for part in error["loc"])
                + f": {error['msg']}",
                hint=HINT,
            )
            for error in exc.errors()[:10]
        ]
        raise InputError(problems) from None


def refused(file: str, why: str) -> InputError:
    return InputError([Problem(file, message=f"not a usable plan file: {why}", hint=HINT)])
