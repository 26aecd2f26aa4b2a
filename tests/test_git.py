"""Manifests from git: a URL at a ref, fetched shallow into a cached clone; the commit
recorded in plans, runs and the inventory; `plan --base` on pull requests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.checkout import MAINTAIN_EVERY, Git, Origin, fetch
from reconciler.render.plan import COMMENT_MARKER
from reconciler.state import SqliteStore
from tests.conftest import EXAMPLES, run_cli
from tests.gitrepo import GitRepo, git

SECRET_MANIFEST = """\
apiVersion: pachyderm/v1
kind: Secret
metadata: {name: registry}
spec: {data: {password: hunter2-literal, token: "${env:REGISTRY_TOKEN}"}}
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    monkeypatch.setenv("RECONCILER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGISTRY_TOKEN", "tok-sekrit-123")
    return GitRepo(tmp_path / "git", EXAMPLES / "quickstart")


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    code = run_cli("plan", "--format", "json", *args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data: dict[str, object] = json.loads(captured.out)
    return data


def test_a_plan_from_a_git_url_records_the_commit_and_no_credential(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    url = repo.url.replace("file://", "file://deploy:pa55word@")
    data = plan_json(capsys, url, "--ref", "main")
    masked = repo.url  # recorded without credentials: they come from the environment
    assert data["source"] == {"path": masked, "revision": repo.head(), "profile": None}
    assert data["summary"]["create"] == 8  # type: ignore[index]
    assert "pa55word" not in json.dumps(data)


def test_apply_from_a_git_url_records_the_commit_in_runs_and_inventory(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = repo.head()
    assert run_cli("apply", "--yes", repo.url) == 0, capsys.readouterr().err
    (clone,) = (tmp_path / "cache" / "git").glob("remote.git-*[!k]")
    store = SqliteStore(clone / ".reconciler" / "state.db")
    assert {entry.revision for entry in store.inventory().values()} == {first}
    assert [run.revision for run in store.runs()] == [first]
    store.close()

    repo.replace("manifests/pachyderm.yaml", "alpine:3.20", "alpine:3.21")
    second = repo.commit("newer alpine")
    repo.push()
    assert run_cli("apply", "--yes", repo.url) == 0, capsys.readouterr().err
    store = SqliteStore(clone / ".reconciler" / "state.db")
    revisions = {rid: entry.revision for rid, entry in store.inventory().items()}
    assert revisions["pachyderm:Pipeline/vision/summary"] == second
    assert revisions["pachyderm:Pipeline/vision/edges"] == first  # untouched, not re-recorded
    assert [run.revision for run in store.runs()][:1] == [second]
    store.close()
    # The state beside the cached clone survived the second fetch: nothing left to do.
    assert run_cli("plan", "--detailed-exitcode", repo.url) == 0


def test_the_cached_clone_is_reused_and_follows_the_remote(repo: GitRepo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one = fetch(Origin.parse(repo.url + "//manifests"), cache=cache)
    assert one.revision == repo.head()
    (one.folder.parent / ".reconciler").mkdir()
    (one.folder.parent / ".reconciler" / "keep").write_text("state")
    repo.write("manifests/extra.yaml", "apiVersion: pachyderm/v1\nkind: Project\n")
    (repo.work / "manifests" / "insights.yaml").unlink()
    repo.commit("change files")
    repo.push()
    two = fetch(Origin.parse(repo.url + "//manifests"), cache=cache)
    assert two.folder == one.folder  # the same clone, fetched again
    assert two.revision == repo.head()
    assert sorted(p.name for p in two.folder.iterdir()) == ["extra.yaml", "pachyderm.yaml"]
    assert (two.folder.parent / ".reconciler" / "keep").read_text() == "state"
    assert git(two.folder, "rev-parse", "--is-shallow-repository") == "true"


def test_a_ref_may_be_a_branch_a_tag_or_a_commit(repo: GitRepo, tmp_path: Path) -> None:
    first = repo.head()
    git(repo.work, "tag", "v1")
    repo.branch("feature")
    repo.replace("manifests/pachyderm.yaml", "alpine:3.20", "alpine:3.21")
    feature = repo.commit("feature")
    repo.push("feature")
    git(repo.work, "push", "-q", "origin", "v1")
    cache = tmp_path / "cache"
    assert fetch(Origin.parse(repo.url, "feature"), cache=cache).revision == feature
    assert fetch(Origin.parse(repo.url, "v1"), cache=cache).revision == first
    assert fetch(Origin.parse(repo.url, first), cache=cache).revision == first
    assert fetch(Origin.parse(repo.url), cache=cache).revision == first  # remote HEAD: main


def test_an_unknown_ref_is_invalid_input(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("plan", repo.url, "--ref", "no-such-branch") == 3
    assert "no branch, tag or commit 'no-such-branch'" in capsys.readouterr().err
    assert run_cli("plan", ".", "--ref", "main") == 3
    assert "--ref needs a git URL" in capsys.readouterr().err


def test_credentials_never_reach_the_output_nor_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECONCILER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RECONCILER_GIT_TOKEN", "ghp_T0KEN")
    url = "https://robot:hunter2@127.0.0.1:9/acme/manifests.git"
    assert run_cli("plan", url) == 1
    printed = capsys.readouterr()
    assert "git fetch https://robot:***@127.0.0.1:9/acme/manifests.git" in printed.err
    assert "hunter2" not in printed.out + printed.err
    assert "ghp_T0KEN" not in printed.out + printed.err
    environment = Git().env()
    # The token travels as configuration in the environment, never as an argument.
    assert environment["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert environment["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert environment["GIT_TERMINAL_PROMPT"] == "0"


def pull_request(repo: GitRepo) -> None:
    """On a branch: one pipeline changed, a file inside a package changed, a secret and a
    repo added, a repo removed."""
    repo.branch("change")
    repo.replace("manifests/pachyderm.yaml", "alpine:3.20", "alpine:3.21")
    repo.replace(
        "manifests/pachyderm.yaml",
        "---\napiVersion: pachyderm/v1\nkind: Repo\nmetadata:\n  name: labels\n",
        "---\napiVersion: pachyderm/v1\nkind: Repo\nmetadata:\n  name: tags\n",
    )
    repo.replace("manifests/pachyderm.yaml", "repo: labels", "repo: tags")
    repo.replace("manifests/pachyderm.yaml", "/pfs/labels", "/pfs/tags")
    repo.write("manifests/secret.yaml", SECRET_MANIFEST)
    with (repo.work / "packages" / "trades" / "src" / "trades-rt.q").open("a") as q:
        q.write("/ a comment\n")
    repo.commit("the pull request")


def test_plan_base_shows_what_the_pull_request_changes_and_the_live_plan(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = repo.head()
    pull_request(repo)
    monkeypatch.chdir(repo.work)
    data = plan_json(capsys, ".", "--base", "main")
    review = data["review"]
    assert isinstance(review, dict)
    assert (review["ref"], review["revision"], review["head_revision"]) == (
        "main",
        base,
        repo.head(),
    )
    changes = {r["id"]: r for r in review["resources"]}
    assert {rid: r["change"] for rid, r in changes.items()} == {
        "insights:Package/trades": "changed",
        "pachyderm:Pipeline/vision/montage": "changed",
        "pachyderm:Pipeline/vision/summary": "changed",
        "pachyderm:Repo/vision/labels": "removed",
        "pachyderm:Repo/vision/tags": "added",
        "pachyderm:Secret/registry": "added",
    }
    assert changes["pachyderm:Pipeline/vision/summary"]["changes"] == [
        {"path": "spec.transform.image", "op": "change", "old": "alpine:3.20", "new": "alpine:3.21"}
    ]
    assert [c["path"] for c in changes["insights:Package/trades"]["changes"]] == [
        "files.src/trades-rt.q"
    ]
    secret = {c["path"]: c["new"] for c in changes["pachyderm:Secret/registry"]["changes"]}
    assert secret["spec.data"] == {"password": "(sensitive)", "token": "${env:REGISTRY_TOKEN}"}
    # The live plan is the head's, against the (empty) sandbox.
    assert data["summary"]["create"] == 9  # type: ignore[index]
    assert data["source"]["revision"] == repo.head()  # type: ignore[index]

    capsys.readouterr()
    assert run_cli("plan", ".", "--base", "main", "--format", "markdown") == 0
    comment = capsys.readouterr().out
    assert comment.startswith(COMMENT_MARKER)
    assert "**Manifest changes since `main`" in comment
    assert "3 changed" in comment and "2 added" in comment and "1 removed" in comment
    assert '~ spec.transform.image: "alpine:3.20" → "alpine:3.21"' in comment
    for secret_text in ("hunter2-literal", "tok-sekrit-123"):
        assert secret_text not in comment
        assert secret_text not in json.dumps(data)


def test_plan_base_from_a_git_url_fetches_the_base_too(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    pull_request(repo)
    repo.push("change")
    data = plan_json(capsys, repo.url, "--ref", "change", "--base", "main")
    review = data["review"]
    assert isinstance(review, dict)
    assert review["summary"] == {"added": 2, "changed": 3, "removed": 1}


def test_a_base_that_does_not_load_is_said_and_the_head_still_planned(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("manifests/broken.yaml", "apiVersion: pachyderm/v1\nkind: Nonsense\n")
    repo.commit("broken")
    repo.branch("fix")
    (repo.work / "manifests" / "broken.yaml").unlink()
    repo.commit("fix")
    monkeypatch.chdir(repo.work)
    data = plan_json(capsys, ".", "--base", "main")
    review = data["review"]
    assert isinstance(review, dict)
    assert review["error"].startswith("the base does not load: manifests/broken.yaml")
    assert review["resources"] == []
    assert data["summary"]["create"] == 8  # type: ignore[index]


def test_plan_base_needs_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "p.yaml").write_text("apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: a}\n")
    assert run_cli("plan", str(folder), "--base", "main") == 3
    assert "is not in a git work tree" in capsys.readouterr().err
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "one")
    assert run_cli("plan", str(folder), "--base", "nope") == 3
    assert "'nope' is not a commit, branch or tag" in capsys.readouterr().err


def test_a_huge_pull_request_comment_stays_under_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.synthetic import write

    monkeypatch.setenv("RECONCILER_CACHE", str(tmp_path / "cache"))
    made = GitRepo(tmp_path / "git")
    made.branch("big")
    write(made.work / "big", 600, seed=3, url="embedded", insights_every=10_000)
    made.commit("six hundred resources")
    monkeypatch.chdir(made.work / "big")
    capsys.readouterr()
    assert run_cli("plan", ".", "--base", "main", "--format", "markdown") == 0
    comment = capsys.readouterr().out
    assert len(comment) <= 65_000
    assert "more sections not shown" in comment
    assert "600 added" in comment


class _Recording(Git):
    def __init__(self) -> None:
        super().__init__()
        self.commands: list[list[str]] = []

    def output(self, args: Sequence[str], cwd: Path, *, what: str) -> bytes:
        self.commands.append(list(args))
        return super().output(args, cwd, what=what)


def test_a_busy_clone_is_maintained_once_every_few_fetches_not_after_each(
    repo: GitRepo, tmp_path: Path
) -> None:
    """`serve` fetches the same clone run after run: git's own maintenance check after
    every fetch is a process each time; ours runs once in MAINTAIN_EVERY fetches, and
    still packs what the fetches left (here one pack a fetch, git to keep at most two)."""
    cache, recording = tmp_path / "cache", _Recording()
    first = fetch(Origin.parse(repo.url), recording, cache=cache)
    clone = first.repository
    assert clone is not None
    git(clone, "config", "fetch.unpackLimit", "1")
    git(clone, "config", "gc.autoPackLimit", "2")
    git(clone, "config", "gc.autoDetach", "false")  # packed before fetch returns
    packs = clone / ".git" / "objects" / "pack"
    counts = []
    for number in range(2 * MAINTAIN_EVERY):
        repo.write("manifests/extra.yaml", f"# {number}\n")
        repo.commit(f"change {number}")
        repo.push()
        fetch(Origin.parse(repo.url), recording, cache=cache)
        counts.append(len(list(packs.glob("*.pack"))))
    fetches = [c for c in recording.commands if c[0] == "fetch"]
    maintained = [c for c in recording.commands if c[0] == "maintenance"]
    assert all("--no-auto-maintenance" in c for c in fetches)
    assert len(fetches) == 2 * MAINTAIN_EVERY + 1 and len(maintained) == 2
    assert max(counts) > 2  # packs piled up between two maintenances ...
    assert counts[MAINTAIN_EVERY - 2] <= 2 and counts[-1] <= 2  # ... and were packed


def outside_secret(tmp_path: Path) -> Path:
    """A folder of the runner's, with a YAML file whose value must never be printed."""
    folder = tmp_path / "runner-home"
    folder.mkdir()
    (folder / "creds.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: x}\ntoken: 12345678901234567\n"
    )
    return folder


@pytest.mark.parametrize("leads", ["outside", "inside"])
def test_a_source_folder_the_commit_makes_a_symbolic_link_is_not_read(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str], leads: str
) -> None:
    # `url//teams/a` where the commit tracks `teams/a -> /home/runner`: the runner's own
    # files were read as manifests, and errors quoted their fields and values.
    target = outside_secret(tmp_path) if leads == "outside" else repo.work / "manifests"
    (repo.work / "teams").mkdir()
    (repo.work / "teams" / "a").symlink_to(target, target_is_directory=True)
    repo.commit("a link")
    repo.push()
    capsys.readouterr()
    assert run_cli("validate", f"{repo.url}//teams/a") == 3
    err = capsys.readouterr().err
    assert "the folder 'teams/a' at" in err and "symbolic link" in err
    assert "token" not in err and "1234567890" not in err


def test_a_source_folder_that_climbs_out_is_refused_before_any_fetch(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("validate", f"{repo.url}//manifests/../..") == 3
    assert "climbs out of the repository with '..'" in capsys.readouterr().err


def test_a_local_folder_through_a_link_the_work_tree_tracks_out_of_it_is_refused(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A checked-out pull request decides what `teams/a` is when CI runs `plan teams/a`.
    secret = outside_secret(tmp_path)
    (repo.work / "teams").mkdir()
    (repo.work / "teams" / "a").symlink_to(secret, target_is_directory=True)
    # Untracked, it is the user's own link (a home folder kept in git): followed.
    assert run_cli("validate", str(repo.work / "teams" / "a")) == 3
    assert "unknown top-level field 'token'" in capsys.readouterr().err
    repo.commit("a link")
    assert run_cli("validate", str(repo.work / "teams" / "a")) == 3
    err = capsys.readouterr().err
    assert "is a symbolic link in the git work tree" in err and "it is not followed" in err
    assert "1234567890" not in err
    # A link of the user's own, outside any work tree, is followed.
    mine = tmp_path / "my-link"
    mine.symlink_to(repo.work, target_is_directory=True)
    assert run_cli("validate", str(mine)) == 0


def test_a_base_revision_tracking_a_link_out_of_the_repository_is_not_written_out(
    repo: GitRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = outside_secret(tmp_path)
    (repo.work / "manifests" / "stolen").symlink_to(secret, target_is_directory=True)
    repo.commit("a link out")
    repo.branch("fix")
    (repo.work / "manifests" / "stolen").unlink()
    repo.commit("fix")
    monkeypatch.chdir(repo.work)
    capsys.readouterr()
    # Failed closed: the base is what a review is judged against, and what
    # --trusted-config trusts.
    assert run_cli("plan", ".", "--base", "main") == 3
    err = capsys.readouterr().err
    assert "tracks manifests/stolen, a link that leads outside the repository" in err
    assert "1234567890" not in err
    assert sorted(p.name for p in secret.iterdir()) == ["creds.yaml"]  # nothing written there
