"""The compiled schema check (fastjsonschema) agrees with jsonschema on what pachd's
CreatePipelineRequest schema accepts: on every real example spec, and on specs broken
in each way a schema can refuse."""

from __future__ import annotations

import copy
from typing import Any

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.providers.pachyderm.pipeline_rules import _accepts, _validator
from tests.conftest import DATA
from tests.pachyderm_examples import load_specs, valid_examples


def agree(request: Any) -> bool:
    slow = not list(_validator().iter_errors(request))
    try:
        _accepts()(request)
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    assert fast == slow, request
    return fast


def requests() -> list[dict[str, Any]]:
    specs = [spec for path in valid_examples(DATA) for spec in load_specs(path)]
    return [{k: v for k, v in spec.items() if k != "pipeline"} for spec in specs]


def test_both_judge_every_real_example_alike() -> None:
    found = requests()
    assert len(found) >= 50
    verdicts = []
    for request in found:
        request["pipeline"] = {"name": "p", "project": {"name": "default"}}
        verdicts.append(agree(request))
    # As written (some in snake_case, which the loader turns to camelCase first), many pass.
    assert verdicts.count(True) >= 25


BREAKAGES: list[tuple[str, Any]] = [
    ("parallelismSpec", "two"),
    ("transform", ["not", "an", "object"]),
    ("datumTries", "many"),
    ("autoscaling", "yes"),
    ("resourceRequests", {"cpu": "a lot"}),
    ("input", {"pfs": {"glob": 7}}),
    ("egress", {"URL": ["x"]}),
]


@pytest.mark.parametrize(("field", "value"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_both_refuse_the_same_breakages(field: str, value: Any) -> None:
    pipeline = {"name": "p", "project": {"name": "default"}}
    request = next(r for r in requests() if agree({**r, "pipeline": pipeline}))
    request["pipeline"] = pipeline
    request[field] = value
    assert not agree(request)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_both_agree_on_random_changes_to_real_specs(data: st.DataObject) -> None:
    found = requests()
    request = copy.deepcopy(data.draw(st.sampled_from(found)))
    request["pipeline"] = {"name": "p", "project": {"name": "default"}}
    keys = [*sorted(request), "transform", "input", "parallelismSpec", "datumTimeout"]
    key = data.draw(st.sampled_from(keys))
    request[key] = data.draw(values)
    agree(request)
