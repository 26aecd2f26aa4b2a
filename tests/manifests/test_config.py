"""reconciler.yaml: defaults, targets, profiles with extends, select and patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.manifests import LoadOptions, load
from reconciler.manifests.values import Sensitive
from reconciler.providers.insights.kinds import DeploymentSpec
from reconciler.providers.insights.target import InsightsTarget
from reconciler.providers.pachyderm.kinds import PipelineSpec
from reconciler.providers.pachyderm.target import PachydermTarget
from tests.conftest import EXAMPLES

PIPELINE = """apiVersion: pachyderm/v1
kind: Pipeline
metadata: {name: edges, labels: {team: cv}}
spec:
  transform: {image: busybox, cmd: [sh]}
  input: {pfs: {repo: images, glob: /*}}
---
apiVersion: pachyderm/v1
kind: Repo
metadata: {name: images}
"""


def _project(tmp_path: Path, config: str | None) -> Path:
    (tmp_path / "m.yaml").write_text(PIPELINE)
    if config is not None:
        (tmp_path / "reconciler.yaml").write_text(config)
    return tmp_path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load(_project(tmp_path, None)).settings
    assert settings.state == "sqlite:///.reconciler/state.db"
    assert settings.prune is False
    assert isinstance(settings.targets["pachyderm"], PachydermTarget)
    assert isinstance(settings.targets["insights"], InsightsTarget)
    assert settings.targets["pachyderm"].url == "embedded"


def test_profiles_extend_several_parents_in_order(tmp_path: Path) -> None:
    config = """
targets:
  pachyderm: {provider: pachyderm, url: embedded}
profiles:
  a:
    targets: {pachyderm: {url: "https://a.example.com"}}
    prune: true
    select: ["kind=Repo"]
  b:
    targets: {pachyderm: {url: "https://b.example.com", timeout: 5}}
  prod:
    extends: [a, b]
    targets: {pachyderm: {auth: {token: "${env:PACH_TOKEN}"}}}
"""
    settings = load(_project(tmp_path, config), LoadOptions(profile="prod", env={})).settings
    target = settings.targets["pachyderm"]
    assert isinstance(target, PachydermTarget)
    assert target.url == "https://b.example.com"  # the later parent wins
    assert target.timeout == 5
    assert settings.prune is True  # inherited from a
    assert settings.select == ("kind=Repo",)
    # Target credentials are read only when a provider connects, not at validation.
    assert isinstance(target.auth.token, Sensitive)


def test_patches_apply_to_matching_resources_only(tmp_path: Path) -> None:
    config = """
profiles:
  prod:
    patches:
      - match: {kind: Pipeline, labels: {team: cv}}
        patch: {spec: {datumTries: 5, transform: {image: "busybox:1.36"}}}
      - match: {kind: Pipeline, name: "other-*"}
        patch: {spec: {datumTries: 9}}
"""
    manifests = load(_project(tmp_path, config), LoadOptions(profile="prod"))
    (pipeline,) = [r for r in manifests.resources if r.kind == "Pipeline"]
    assert isinstance(pipeline.spec, PipelineSpec)
    assert pipeline.spec.datum_tries == 5
    assert pipeline.spec.transform is not None
    assert pipeline.spec.transform.image == "busybox:1.36"
    assert pipeline.spec.transform.cmd == ["sh"]  # merged, not replaced
    # Without the profile, the manifest is as written.
    plain = load(tmp_path)
    (pipeline,) = [r for r in plain.resources if r.kind == "Pipeline"]
    assert isinstance(pipeline.spec, PipelineSpec)
    assert pipeline.spec.datum_tries is None


def test_quickstart_prod_profile_patches_deployment_env() -> None:
    manifests = load(EXAMPLES / "quickstart", LoadOptions(profile="prod", env={}))
    (deployment,) = [r for r in manifests.resources if r.kind == "Deployment"]
    assert isinstance(deployment.spec, DeploymentSpec)
    assert deployment.spec.env == {"trades-rt": {"LOG_LEVEL": "info"}}
    assert manifests.settings.targets["insights"].url == "https://insights.example.com"


def test_manifest_globs_and_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / ".github").mkdir()
    (tmp_path / "pipelines" / "p.yaml").write_text(PIPELINE)
    (tmp_path / ".github" / "ci.yaml").write_text("on: push\n")
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / "reconciler.yaml").write_text("manifests: ['pipelines/*.yaml']\n")
    assert len(load(tmp_path).resources) == 2
    (tmp_path / "reconciler.yaml").write_text("manifests: [.]\n")
    with pytest.raises(InputError) as caught:
        load(tmp_path)
    files = {p.file for p in caught.value.problems}
    assert any(f.endswith("docker-compose.yml") for f in files)
    assert not any(".github" in f for f in files)


@pytest.mark.parametrize("version", ["1!2.0", "1.0-rc1", "2.1.0rc1", "1.0.0.post1", "1.0+local.7"])
def test_every_pep_440_package_version_is_accepted(version: str) -> None:
    from reconciler.providers.insights.kinds import PackageSpec

    assert PackageSpec.model_validate({"version": version, "source": "p"}).version == version


@pytest.mark.parametrize("version", ["1.0.0-final-final", "latest", "1..0"])
def test_what_is_not_pep_440_is_refused(version: str) -> None:
    from pydantic import ValidationError

    from reconciler.providers.insights.kinds import PackageSpec

    with pytest.raises(ValidationError, match="not a PEP 440 package version"):
        PackageSpec.model_validate({"version": version, "source": "p"})
