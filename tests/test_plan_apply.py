"""`plan` and `apply` end to end on the command line, against the fake provider."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.errors import OperationalError, PermanentError
from reconciler.manifests import Manifests, ResourceId
from reconciler.manifests.config import TargetConfig
from reconciler.plan import Plan
from reconciler.providers.base import Desired, Observation
from reconciler.reconcile import Connector
from reconciler.render.plan import markdown
from tests.conftest import EXAMPLES, run_cli
from tests.fake import FakeConnector, FakePlatform, FakeProvider

SECRET_VALUE = "hunter2-s3cret-value"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    root = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", root)
    (root / "manifests" / "secret.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: db}\n"
        'spec: {data: {password: "${env:DB_PASSWORD}"}}\n'
    )
    return root


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", SECRET_VALUE)


def test_plan_apply_plan_is_empty(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeConnector()
    assert run_cli("plan", str(quickstart), "--detailed-exitcode", connector=fake) == 2
    text = capsys.readouterr().out
    assert "Plan: 9 to create; 0 unchanged." in text
    assert "+ create   pachyderm:Pipeline/vision/edges" in text
    assert fake.platforms["pachyderm"].calls == []  # a plan only reads

    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 0
    text = capsys.readouterr().out
    assert "Apply complete: 9 done" in text
    assert len(fake.platforms["pachyderm"].calls) == 7

    assert run_cli("plan", str(quickstart), "--detailed-exitcode", connector=fake) == 0
    assert "No changes. The targets match the manifests." in capsys.readouterr().out
    assert run_cli("apply", str(quickstart), connector=fake) == 0  # nothing to confirm
    assert len(fake.platforms["pachyderm"].calls) == 7


def test_plan_json_has_the_documented_shape(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("plan", str(quickstart), "--format", "json", connector=FakeConnector()) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["format_version"] == "1"
    assert plan["source"] == {
        "path": str(quickstart.resolve()),
        "revision": None,
        "profile": None,
    }
    assert list(plan["summary"]) == ["create", "patch", "bounce", "replace", "delete", "noop"]
    assert plan["fingerprint"].startswith("hmac-sha256:")
    assert plan["state"]["targets"] == ["insights", "pachyderm"]
    assert plan["options"]["max_deletes"] == 10
    assert plan["warnings"] == []
    required = {
        "id",
        "target",
        "kind",
        "name",
        "action",
        "reasons",
        "changes",
        "depends_on",
        "step",
    }
    for action in plan["actions"]:
        assert required <= set(action)
    edges = next(a for a in plan["actions"] if a["id"] == "pachyderm:Pipeline/vision/edges")
    assert edges["depends_on"] == ["pachyderm:Project/vision", "pachyderm:Repo/vision/images"]
    assert edges["step"] == 2
    Plan.from_json(plan)  # reads back


def test_apply_refuses_without_a_terminal_and_without_yes(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    assert run_cli("apply", str(quickstart), connector=fake) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert all(p.calls == [] for p in fake.platforms.values())


def test_saved_plan_is_applied_exactly(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    plan_file = quickstart / "plan.json"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    # Manifests change after the plan: the saved plan must not pick that up silently.
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 0
    assert "Apply complete: 9 done" in capsys.readouterr().out


def test_stale_plan_is_refused_naming_what_moved(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 0
    manifests = quickstart / "manifests" / "pachyderm.yaml"
    manifests.write_text(manifests.read_text().replace("Raw images, one", "Raw images; one"))
    plan_file = quickstart / "plan.json"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    capsys.readouterr()

    # Someone changes the repo on the platform after the plan was made.
    repo = ResourceId("pachyderm", "Repo", "vision/images")
    fake.platforms["pachyderm"].resources[repo]["description"] = "changed by hand"
    calls_before = len(fake.platforms["pachyderm"].calls)
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 1
    err = capsys.readouterr().err
    assert "the saved plan is stale" in err
    assert "pachyderm:Repo/vision/images: its live state changed on the target" in err
    assert len(fake.platforms["pachyderm"].calls) == calls_before

    # Or the manifests change after the plan.
    fake.platforms["pachyderm"].resources[repo]["description"] = "Raw images, one file per image"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    manifests.write_text(manifests.read_text().replace("Raw images; one", "Raw images and one"))
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 1
    assert "pachyderm:Repo/vision/images: its manifest changed" in capsys.readouterr().err


def test_edited_or_foreign_plan_files_are_input_errors(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    plan_file = quickstart / "plan.json"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    data = json.loads(plan_file.read_text())
    data["actions"][0]["action"] = "delete"
    plan_file.write_text(json.dumps(data))
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 3
    assert "was it edited?" in capsys.readouterr().err
    plan_file.write_text("{}")
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 3
    assert run_cli("apply", "--plan", str(quickstart / "nope.json"), connector=fake) == 3
    assert all(p.calls == [] for p in fake.platforms.values())


def test_plan_errors_exit_1_and_block_apply(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    insights = quickstart / "manifests" / "insights.yaml"
    insights.write_text(
        insights.read_text().replace(
            "  name: trades\n  labels", "  name: trades\n  protect: true\n  labels", 2
        )
    )
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 0
    # A new package version is pushed beside the old one and the old one removed: a
    # replace, which protect forbids.
    insights.write_text(insights.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    package = quickstart / "packages" / "trades" / "manifest.yaml"
    package.write_text(package.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    fake.providers.clear()
    assert run_cli("plan", str(quickstart), connector=fake) == 1
    out = capsys.readouterr().out
    assert "is protected (protect: true) and this plan would replace it" in out
    assert "This plan cannot be applied" in out
    calls = len(fake.platforms["insights"].calls)
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 1
    assert len(fake.platforms["insights"].calls) == calls


def test_failed_apply_exits_1_and_says_what_was_done(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    fake.platforms["pachyderm"] = platform = FakePlatform()
    platform.faults[("create", "pachyderm:Repo/vision/images")] = [PermanentError("quota exceeded")]
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 1
    out = capsys.readouterr().out
    assert "failed      create   pachyderm:Repo/vision/images" in out
    assert "create: quota exceeded" in out
    assert "skipped: pachyderm:Repo/vision/images failed" in out
    assert "Apply partial: 5 done, 1 failed, 3 skipped" in out


def test_apply_json_output(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("apply", str(quickstart), "--yes", "-f", "json", connector=FakeConnector()) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["result"] == "succeeded"
    assert report["counts"]["ok"] == 9


def test_bad_selections_are_input_errors(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector()
    assert run_cli("plan", str(quickstart), "--select", "Pipline", connector=fake) == 3
    assert "'Pipline' matches no resource" in capsys.readouterr().err
    assert run_cli("plan", str(quickstart), "--no-deps", connector=fake) == 3
    assert (
        run_cli(
            "plan",
            str(quickstart),
            "--select",
            "Pipeline/vision/edges",
            "--no-deps",
            connector=fake,
        )
        == 0
    )
    assert "Plan: 1 to create" in capsys.readouterr().out


def test_secrets_never_leave_in_clear(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeConnector()
    plan_file = quickstart / "plan.json"
    outputs = []
    for fmt in ("text", "json", "markdown"):
        assert (
            run_cli(
                "plan", str(quickstart), "-f", fmt, "-v", "--out", str(plan_file), connector=fake
            )
            == 0
        )
        outputs.append(capsys.readouterr().out)
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 0
    monkey = pytest.MonkeyPatch()
    monkey.setenv("DB_PASSWORD", "a-new-password")
    try:
        assert run_cli("plan", str(quickstart), "-f", "markdown", connector=fake) == 0
    finally:
        monkey.undo()
    changed = capsys.readouterr().out
    outputs.append(changed)
    assert "<code>-/+ replace</code> <code>pachyderm:Secret/db</code>" in changed
    assert "~ spec.data: (sensitive) → (sensitive)" in changed
    for text in outputs:
        assert SECRET_VALUE not in text
    assert SECRET_VALUE not in plan_file.read_text()
    assert SECRET_VALUE.encode() not in (quickstart / ".reconciler" / "state.db").read_bytes()
    assert fake.platforms["pachyderm"].secrets  # the platform itself did get the value


def test_markdown_is_cut_to_the_comment_limit(quickstart: Path) -> None:
    fake = FakeConnector()
    plan_file = quickstart / "plan.json"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    plan = Plan.from_json(json.loads(plan_file.read_text()))
    full = markdown(plan)
    assert full.count("<details>") == 9
    cut = markdown(plan, limit=2500)
    assert len(cut) <= 2500
    assert "not shown: a comment holds at most 2,500 characters" in cut
    assert cut.count("<details>") < 9


def test_a_target_that_cannot_connect_closes_the_ones_already_connected(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed: list[str] = []

    class Closing(FakeProvider):
        async def aclose(self) -> None:
            closed.append(self.target)

    def connector(target: str, config: TargetConfig, manifests: Manifests) -> FakeProvider:
        if target == "pachyderm":
            raise OperationalError("pachd: cannot build a client")
        return Closing(target, config, FakePlatform(), manifests)

    assert run_cli("plan", str(quickstart), connector=connector) == 1
    assert "pachd: cannot build a client" in capsys.readouterr().err
    assert closed == ["insights"]


class _Buggy(FakeProvider):
    """A provider with a bug: a KeyError where it should have raised our errors."""

    observe_bug = False

    async def observe(self) -> Observation:
        if self.observe_bug and self.target == "pachyderm":
            raise KeyError("pipeline_info")
        return await super().observe()

    async def create(self, desired: Desired) -> None:
        if desired.id.kind == "Package":
            raise KeyError("versions")
        await super().create(desired)


def _buggy(observe: bool) -> Connector:
    def connect(target: str, config: TargetConfig, manifests: Manifests) -> FakeProvider:
        provider = _Buggy(target, config, FakePlatform(), manifests)
        provider.observe_bug = observe
        return provider

    return connect


def test_a_provider_bug_is_one_line_and_its_traceback_only_with_debug(
    quickstart: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("plan", str(quickstart), connector=_buggy(observe=True)) == 1
    err = capsys.readouterr().err
    assert "internal error: KeyError: 'pipeline_info'" in err and "--debug" in err
    assert "Traceback" not in err

    assert run_cli("--debug", "plan", str(quickstart), connector=_buggy(observe=True)) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "raise KeyError" in err


def test_a_provider_bug_in_one_action_fails_that_action_and_logs_where_with_debug(
    quickstart: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_LOG", "debug")
    code = run_cli("apply", str(quickstart), "--yes", connector=_buggy(observe=False))
    assert code == 1
    captured = capsys.readouterr()
    assert "internal error in the provider: KeyError: 'versions'" in captured.out + captured.err
    assert "Traceback (most recent call last)" in captured.err
    # Other actions went on: the Pachyderm ones do not depend on the package.
    assert "pachyderm:Project/vision" in captured.out


def test_a_saved_plan_whose_changes_have_dotted_keys_applies(
    quickstart: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keys holding dots and brackets (as labels and env names may) are kept exactly in
    a plan file, so its signature still verifies."""
    fake = FakeConnector()
    assert run_cli("apply", str(quickstart), "--yes", connector=fake) == 0
    insights = quickstart / "manifests" / "insights.yaml"
    insights.write_text(
        insights.read_text().replace(
            "LOG_LEVEL: debug", "LOG_LEVEL: debug\n      'app.kubernetes.io/x[y]..z': 'on'"
        )
    )
    plan_file = quickstart / "plan.json"
    assert run_cli("plan", str(quickstart), "--out", str(plan_file), connector=fake) == 0
    assert '"spec.env.trades-rt.app.kubernetes.io/x[y]..z"' in plan_file.read_text()
    capsys.readouterr()
    assert run_cli("apply", "--plan", str(plan_file), "--yes", connector=fake) == 0
    assert "Apply complete: 1 done" in capsys.readouterr().out
