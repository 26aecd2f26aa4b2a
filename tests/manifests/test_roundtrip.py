"""Every model dumps to a manifest and loads back unchanged (hypothesis)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.manifests import LoadOptions, load

ENV = {"TOKEN": "t0k3n", "PASSWORD": "pa55"}

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30
).filter(lambda s: "${" not in s)
value = st.one_of(text, st.sampled_from(["${env:TOKEN}", "${env:PASSWORD}", "x-${env:TOKEN}-y"]))
labels = st.dictionaries(names, names, max_size=3)


def _pfs(draw: Any, repos: list[str]) -> dict[str, Any]:
    pfs: dict[str, Any] = {
        "repo": draw(st.sampled_from(repos)),
        "glob": draw(st.sampled_from(["/", "/*"])),
    }
    if draw(st.booleans()):
        pfs["branch"] = draw(st.sampled_from(["master", "dev"]))
    if draw(st.booleans()):
        pfs["lazy"] = draw(st.booleans())
    return {"pfs": pfs}


@st.composite
def inputs(draw: Any, repos: list[str], depth: int = 0) -> dict[str, Any]:
    if depth >= 2 or draw(st.booleans()):
        return _pfs(draw, repos)
    combinator = draw(st.sampled_from(["cross", "union", "join", "group"]))
    children = draw(st.lists(inputs(repos, depth + 1), min_size=1, max_size=3))
    return {combinator: children}


@st.composite
def pipeline_specs(draw: Any, repos: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "transform": {
            "image": draw(value),
            "cmd": draw(st.lists(value, max_size=3)),
        },
        "input": draw(inputs(repos)),
    }
    if draw(st.booleans()):
        spec["transform"]["env"] = draw(st.dictionaries(names.map(str.upper), value, max_size=3))
    if draw(st.booleans()):
        spec["parallelismSpec"] = {"constant": draw(st.integers(1, 64))}
    if draw(st.booleans()):
        spec["datumTries"] = draw(st.integers(1, 10))
    if draw(st.booleans()):
        spec["resourceRequests"] = {
            "cpu": draw(st.floats(0.1, 8, allow_nan=False)),
            "memory": "1Gi",
        }
    if draw(st.booleans()):
        spec["description"] = draw(text)
    if draw(st.booleans()):
        spec["stopped"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["datumTimeout"] = f"{draw(st.integers(1, 999))}s"
    return spec


@st.composite
def manifest_sets(draw: Any) -> list[dict[str, Any]]:
    repos = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "pachyderm/v1",
            "kind": "Project",
            "metadata": {"name": "proj"},
            "spec": {"description": draw(text)},
        },
    ]
    for repo in repos:
        docs.append(
            {
                "apiVersion": "pachyderm/v1",
                "kind": "Repo",
                "metadata": {"name": repo, "project": "proj", "labels": draw(labels)},
                "spec": {"description": draw(text)},
            }
        )
    for index in range(draw(st.integers(0, 3))):
        docs.append(
            {
                "apiVersion": "pachyderm/v1",
                "kind": "Pipeline",
                "metadata": {
                    "name": f"pipe{index}",
                    "project": "proj",
                    "protect": draw(st.booleans()),
                },
                "spec": draw(pipeline_specs(repos)),
            }
        )
    docs.append(
        {
            "apiVersion": "pachyderm/v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "spec": {"type": "Opaque", "data": draw(st.dictionaries(names, value, max_size=3))},
        }
    )
    docs.append(
        {
            "apiVersion": "insights/v1",
            "kind": "Package",
            "metadata": {"name": "pkg"},
            "spec": {
                "version": draw(st.from_regex(r"[0-9]\.[0-9]{1,2}\.[0-9]", fullmatch=True)),
                "artifact": "pkg.kxi",
            },
        }
    )
    deployment: dict[str, Any] = {
        "package": "pkg",
        "updateStrategy": draw(st.sampled_from(["redeploy", "hotload"])),
    }
    if deployment["updateStrategy"] == "hotload":
        deployment["hotloadTargets"] = draw(st.lists(names, min_size=1, max_size=2))
    # kdb Insights takes env only with a whole-package deploy: one or the other.
    if draw(st.booleans()):
        deployment["components"] = [
            {"type": "pipeline", "name": n} for n in draw(st.lists(names, max_size=2))
        ]
    elif draw(st.booleans()):
        deployment["env"] = {
            draw(names): draw(st.dictionaries(names.map(str.upper), value, max_size=2))
        }
    docs.append(
        {
            "apiVersion": "insights/v1",
            "kind": "Deployment",
            "metadata": {"name": "dep"},
            "spec": deployment,
        }
    )
    return docs


def _dump(docs: list[dict[str, Any]]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump_all(docs, stream)
    return stream.getvalue()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=manifest_sets())
def test_load_dump_load_is_identity(tmp_path_factory: Any, docs: list[dict[str, Any]]) -> None:
    folder: Path = tmp_path_factory.mktemp("rt")
    (folder / "pkg.kxi").write_bytes(b"PK")
    (folder / "m.yaml").write_text(_dump(docs))
    first = load(folder, LoadOptions(env=ENV))
    dumped = [r.to_data() for r in first.resources]
    canonical = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    assert sorted(map(canonical, dumped)) == sorted(map(canonical, docs))
    (folder / "m.yaml").write_text(_dump(dumped))
    second = load(folder, LoadOptions(env=ENV))
    assert [r.to_data() for r in second.resources] == dumped
    assert [(r.id, r.metadata, r.spec) for r in second.resources] == [
        (r.id, r.metadata, r.spec) for r in first.resources
    ]
    # The manifest form writes the references, never the values behind them.
    assert "t0k3n" not in _dump(dumped) and "pa55" not in _dump(dumped)
