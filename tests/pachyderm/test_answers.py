"""pachd's answers are untrusted input: one of the wrong shape (a gateway or proxy in
between, another version) is an error naming the RPC and the field, never a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.errors import PermanentError, ReconcilerError
from reconciler.manifests import ResourceId
from reconciler.providers.http import asgi_transport
from reconciler.providers.pachyderm.connection import connect
from reconciler.providers.pachyderm.target import PachydermTarget
from tests.pachyderm.helpers import connecting

OWNED = frozenset(
    {
        ResourceId("pachyderm", "Project", "p"),
        ResourceId("pachyderm", "Repo", "p/r"),
        ResourceId("pachyderm", "Pipeline", "p/a"),
        ResourceId("pachyderm", "Secret", "s"),
        ResourceId("pachyderm", "ProjectDefaults", "p"),
        ResourceId("pachyderm", "ClusterDefaults", "cluster"),
    }
)


STREAMS = ("ListProject", "ListRepo", "ListPipeline")


def pachd(answers: dict[str, Any]) -> Starlette:
    """A gateway answering each stream RPC with the items listed for it (none when not
    listed, or not a list), and each unary one with its answer (null when not listed)."""

    async def rpc(request: Request) -> Response:
        method = request.url.path.rsplit("/", 1)[-1]
        answer = answers.get(method)
        if method in STREAMS:
            items = answer if isinstance(answer, list) else []
            lines = "".join(json.dumps({"result": item}) + "\n" for item in items)
            return Response(lines, media_type="application/json")
        return Response(json.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route("/api/{rest:path}", rpc, methods=["POST"])])


def observe(app: Starlette) -> None:
    async def scenario() -> None:
        config = PachydermTarget(provider="pachyderm", url="http://pachd", timeout=5, retries=0)
        transport = asgi_transport(app)
        provider = connect(connecting("pachyderm", config, transport=transport))
        provider.expect(OWNED)
        try:
            await provider.observe()
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def _pipeline(**fields: Any) -> dict[str, Any]:
    return {"pipeline": {"name": "a", "project": {"name": "p"}}, "userSpecJson": "{}", **fields}


@pytest.mark.parametrize(
    "answers,said",
    [
        (
            {"ListProject": ["x"]},
            "ListProject with something reconciler cannot read: its answer is 'x'",
        ),
        ({"ListProject": [{"project": {"name": "p"}, "description": {"x": 1}}]}, "its description"),
        (
            {"ListRepo": [{"repo": "r"}]},
            "ListRepo with something reconciler cannot read: its repo is 'r'",
        ),
        ({"ListRepo": [{"repo": {"name": "r", "type": ["user"]}}]}, "its repo.type is ['user']"),
        ({"ListRepo": [5]}, "its answer is 5, not an object"),
        (
            {"ListPipeline": [{"pipeline": "a"}]},
            "ListPipeline with something reconciler cannot read: its pipeline is 'a'",
        ),
        ({"ListPipeline": [_pipeline(version={"a": 1})]}, "its version is {'a': 1}"),
        (
            {"ListSecret": {"secretInfo": {"secret": "s"}}},
            "ListSecret with something reconciler cannot read: its secretInfo",
        ),
        ({"ListSecret": {"secretInfo": [{"secret": "s"}]}}, "its secretInfo[0].secret is 's'"),
        ({"ListSecret": {"secretInfo": [None]}}, "its secretInfo[0] is None"),
        (
            {"ListRepo": [None]},
            "ListRepo with something reconciler cannot read: its answer is None",
        ),
    ],
)
def test_an_answer_of_the_wrong_shape_is_refused_naming_the_field(
    answers: dict[str, Any], said: str
) -> None:
    with pytest.raises(PermanentError, match="pachd answered") as refused:
        observe(pachd(answers))
    assert said in str(refused.value)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "p", "r", "s", "/*"])
)
FIELDS = st.sampled_from(
    [
        "transform", "input", "pfs", "cron", "cross", "union", "join", "group", "secrets",
        "imagePullSecrets", "egress", "sqlDatabase", "secret", "service", "name", "repo",
        "project", "key", "envVar", "image", "cmd", "spout", "datumTries", "glob",
    ]
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(FIELDS, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.dictionaries(FIELDS, JSON, max_size=5))
def test_any_pipeline_spec_pachd_sends_is_read_or_refused_never_a_crash(
    spec: dict[str, Any],
) -> None:
    """The spec inside PipelineInfo (userSpecJson) is pachd's too: any field may hold
    anything, and reading it (its inputs, its secrets, its defaults) never crashes."""
    app = pachd({"ListPipeline": [_pipeline(userSpecJson=json.dumps(spec))]})
    with contextlib.suppress(ReconcilerError):  # refused is fine; anything else is not
        observe(app)


RPCS = st.sampled_from(
    [
        "ListProject", "ListRepo", "ListPipeline", "ListSecret", "InspectSecret",
        "GetClusterDefaults", "GetProjectDefaults", "SetClusterDefaults", "SetProjectDefaults",
    ]
)  # fmt: skip
ANSWER_FIELDS = st.sampled_from(
    [
        "project", "repo", "pipeline", "name", "type", "description", "secret", "secretInfo",
        "version", "state", "reason", "stopped", "userSpecJson", "clusterDefaultsJson",
        "projectDefaultsJson", "affectedPipelines",
    ]
)  # fmt: skip
ANSWERS = st.recursive(
    st.one_of(SCALARS, st.sampled_from(["{}", "[1]", '{"transform": 3}'])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(ANSWER_FIELDS, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.dictionaries(RPCS, ANSWERS, max_size=6))
def test_any_answer_pachd_sends_is_read_or_refused_never_a_crash(answers: dict[str, Any]) -> None:
    """Every list and read an observation makes, answered with anything at all (a
    source owning projects, repos, pipelines, secrets and defaults reads them all)."""
    with contextlib.suppress(ReconcilerError):
        observe(pachd(answers))


def _nested(depth: int) -> str:
    return '{"x": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [150, 100_000])
@pytest.mark.parametrize(
    "answers,said",
    [
        (lambda deep: {"ListPipeline": [_pipeline(userSpecJson=deep)]}, "spec nested more than"),
        (
            lambda deep: {"GetClusterDefaults": {"clusterDefaultsJson": deep}},
            "defaults nested more than",
        ),
    ],
    ids=["pipeline-spec", "cluster-defaults"],
)
def test_json_nested_too_deep_is_refused_not_a_recursion_error(
    depth: int, answers: Any, said: str
) -> None:
    """Walking it (defaults, canonical form, the diff) would exhaust Python's recursion;
    the parser itself gives up on the deepest."""
    with pytest.raises(PermanentError, match=said):
        observe(pachd(answers(_nested(depth))))


def test_an_answer_the_json_parser_cannot_descend_is_refused() -> None:
    async def rpc(request: Request) -> Response:
        if request.url.path.endswith("ListProject"):
            return Response('{"result": ' + _nested(100_000) + "}\n")
        return Response("")

    app = Starlette(routes=[Route("/api/{rest:path}", rpc, methods=["POST"])])
    with pytest.raises(PermanentError, match="ListProject answered with JSON nested too deep"):
        observe(app)
