"""The real Pachyderm specs and the real kdb Insights package load as they should."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import InputError
from reconciler.graph import build
from reconciler.manifests import LoadOptions, load
from reconciler.providers.pachyderm.kinds import PipelineSpec
from tests.conftest import DATA
from tests.pachyderm_examples import (
    BROKEN_JSON,
    NO_GLOB,
    TEMPLATE,
    load_spec,
    load_specs,
    pfs_inputs,
    valid_examples,
)


def _examples() -> list[Path]:
    return sorted((DATA / "pachyderm" / "examples").iterdir())


def _valid_examples() -> list[Path]:
    return valid_examples(DATA)


def _wrap(spec: dict[str, Any], project: str) -> list[dict[str, Any]]:
    """A real spec as a manifest, with the Project, Repos and Secrets it needs."""
    spec = dict(spec)
    name = spec.pop("pipeline")["name"]
    documents: list[dict[str, Any]] = [
        {"apiVersion": "pachyderm/v1", "kind": "Project", "metadata": {"name": project}},
        {
            "apiVersion": "pachyderm/v1",
            "kind": "Pipeline",
            "metadata": {"name": name, "project": project},
            "spec": spec,
        },
    ]
    repos = set()
    for pfs in pfs_inputs(spec.get("input")):
        repo_project = pfs.get("project", project)
        repos.add((repo_project, pfs["repo"]))
    for repo_project, repo in sorted(repos):
        if repo_project != project:
            documents.append(
                {
                    "apiVersion": "pachyderm/v1",
                    "kind": "Project",
                    "metadata": {"name": repo_project},
                }
            )
        documents.append(
            {
                "apiVersion": "pachyderm/v1",
                "kind": "Repo",
                "metadata": {"name": repo, "project": repo_project},
            }
        )
    return documents


def test_there_are_56_valid_specs_in_53_files() -> None:
    assert len(_valid_examples()) == 53
    assert sum(len(load_specs(p)) for p in _valid_examples()) == 56


def test_every_valid_example_loads_and_graphs(tmp_path: Path) -> None:
    documents: list[dict[str, Any]] = []
    specs = [spec for path in _valid_examples() for spec in load_specs(path)]
    for index, spec in enumerate(specs):
        documents.extend(_wrap(spec, f"p{index:02d}"))
    # Projects named twice (a pipeline reading another project's repo) are written once.
    seen: set[tuple[str, str]] = set()
    unique = []
    for doc in documents:
        key = (doc["kind"], json.dumps(doc["metadata"], sort_keys=True))
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    (tmp_path / "all.yaml").write_text("\n---\n".join(json.dumps(d) for d in unique))
    manifests = load(tmp_path, LoadOptions(env={}))
    pipelines = [r for r in manifests.resources if r.kind == "Pipeline"]
    assert len(pipelines) == 56
    graph = build(manifests.resources)
    for pipeline in pipelines:
        assert graph.dependencies(pipeline.id), f"{pipeline.id} has no dependency"


def test_the_example_without_a_glob_is_refused_where_its_input_is(tmp_path: Path) -> None:
    spec = load_spec(DATA / "pachyderm" / "examples" / NO_GLOB)
    text = "\n---\n".join(json.dumps(d, indent=2) for d in _wrap(spec, "warehouse"))
    (tmp_path / "redshift.yaml").write_text(text)
    with pytest.raises(InputError) as caught:
        load(tmp_path, LoadOptions(env={}))
    (problem,) = caught.value.problems
    lines = text.splitlines()
    assert '"pfs": {' in lines[problem.line - 1]
    assert "spec.input.pfs.glob: a pfs input needs a glob" in problem.message
    assert problem.hint and "glob: '/*'" in problem.hint


@pytest.mark.parametrize("name", ["kubeflow__mnist__pipeline.yaml"])
def test_snake_case_spec_is_the_camel_case_spec(name: str) -> None:
    path = DATA / "pachyderm" / "examples" / name
    spec = load_spec(path)
    spec.pop("pipeline")
    assert "s3_out" in spec
    model = PipelineSpec.model_validate(spec)
    assert model.s3_out is True
    assert model.to_data()["s3Out"] is True
    assert PipelineSpec.model_validate(model.to_data()) == model


@pytest.mark.parametrize("name,line", sorted(BROKEN_JSON.items()))
def test_broken_json_is_a_syntax_error_at_its_line(name: str, line: int) -> None:
    path = DATA / "pachyderm" / "examples" / name
    with pytest.raises(InputError) as caught:
        load(path, LoadOptions(env={}))
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (line, 1)
    assert "JSON syntax error" in problem.message
    assert problem.hint and "split the file" in problem.hint


def test_template_placeholders_are_name_errors(tmp_path: Path) -> None:
    spec = load_spec(DATA / "pachyderm" / "examples" / TEMPLATE)
    documents = _wrap(spec, "default")
    documents = [d for d in documents if d["kind"] != "Project"]
    text = "\n---\n".join(json.dumps(d, indent=2) for d in documents)
    (tmp_path / "template.yaml").write_text(text)
    with pytest.raises(InputError) as caught:
        load(tmp_path, LoadOptions(env={}))
    messages = [p.message for p in caught.value.problems]
    assert any("'$PIPELINE_NAME' is not a valid Pachyderm name" in m for m in messages)
    assert any(
        "'$PIPELINE_DOCKER_SECRETS' is not a valid Kubernetes secret name" in m for m in messages
    )
    assert any("'$PIPELINE_REPO' is not a valid Pachyderm name" in m for m in messages)
    assert all(p.line > 0 for p in caught.value.problems)


def test_equities_package_loads_as_a_package_source(tmp_path: Path) -> None:
    shutil.copytree(DATA / "insights" / "equities-package", tmp_path / "equities")
    (tmp_path / "insights.yaml").write_text(
        "apiVersion: insights/v1\nkind: Package\nmetadata: {name: equities}\n"
        "spec: {version: 0.0.1, source: equities}\n---\n"
        "apiVersion: insights/v1\nkind: Deployment\nmetadata: {name: equities}\n"
        "spec:\n  package: equities\n  components: [{type: pipeline, name: equities-rt}]\n"
    )
    manifests = load(tmp_path, LoadOptions(env={}))
    # The package's own YAML files are package content, not manifests.
    assert manifests.files == (str(tmp_path / "insights.yaml"),)
    assert [str(r.id) for r in manifests.resources] == [
        "insights:Package/equities",
        "insights:Deployment/equities",
    ]
    graph = build(manifests.resources)
    assert [str(n) for n in graph.order()] == [
        "insights:Package/equities",
        "insights:Deployment/equities",
    ]


def test_the_editor_schema_accepts_every_valid_example_as_written() -> None:
    """The JSON Schema editors use takes what `validate` takes: snake_case names
    (`s3_out`, `parallelism_spec`) as well as camelCase, as pachd does."""
    from jsonschema import Draft202012Validator

    from reconciler.manifests.catalog import installed
    from reconciler.manifests.schemas import kind_schema

    validator = Draft202012Validator(kind_schema(installed().kinds[("pachyderm/v1", "Pipeline")]))
    problems = []
    for path in _valid_examples():
        for spec in load_specs(path):
            body = {k: v for k, v in spec.items() if k != "pipeline"}
            manifest = {
                "apiVersion": "pachyderm/v1",
                "kind": "Pipeline",
                "metadata": {"name": spec["pipeline"]["name"]},
                "spec": body,
            }
            problems += [f"{path.name}: {e.message}" for e in validator.iter_errors(manifest)]
    assert problems == []
    misspelt = {"apiVersion": "pachyderm/v1", "kind": "Pipeline", "metadata": {"name": "a"}}
    assert list(validator.iter_errors({**misspelt, "spec": {"s3_outt": True}}))
