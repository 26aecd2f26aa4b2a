"""Untrusted input and every guard on every path: repository content, plan files and
ordinary mistakes can neither run code, nor read the runner's files, nor delete what
they should not. Each test is a case a user (or an attacker) meets at the command line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import apply
from reconciler.compose import sandbox_db
from reconciler.errors import InputError, OperationalError, PermanentError
from reconciler.providers.pachyderm.client import PachdClient
from reconciler.redact import masked
from reconciler.sandbox.store import Store
from reconciler.state import LockHolder, SqliteStore
from reconciler.state.locks import Lease, LockLost, LockOptions, held
from tests.conftest import run_cli
from tests.gitrepo import GitRepo, git

PROJECT = """\
apiVersion: pachyderm/v1
kind: Project
metadata: {{name: {name}{extra}}}
spec: {{description: "{description}"}}
"""
SECRET = """\
apiVersion: pachyderm/v1
kind: Secret
metadata: {{name: creds}}
spec:
  data: {{token: "{value}"}}
"""


def folder_with(root: Path, *documents: str, config: str | None = None) -> Path:
    """A manifests folder on the embedded sandbox, state beside it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reconciler.yaml").write_text(
        config
        if config is not None
        else "manifests: [manifests/]\nstate: sqlite:///.reconciler/state.db\n"
    )
    manifests = root / "manifests"
    manifests.mkdir(exist_ok=True)
    for index, text in enumerate(documents):
        (manifests / f"m{index}.yaml").write_text(text)
    return root


def project(name: str, description: str = "", extra: str = "") -> str:
    return PROJECT.format(name=name, description=description, extra=extra)


def sandbox_calls(folder: Path, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert run_cli("sandbox", "stats", str(folder)) == 0
    return int(json.loads(capsys.readouterr().out)["mutating"])


# --- 1. no option injection into git --------------------------------------------------


def test_a_ref_or_url_that_git_would_read_as_an_option_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "git", folder_with(tmp_path / "t", project("a")))
    witness = tmp_path / "pwned"
    injected = f"--upload-pack=touch {witness}; git-upload-pack"
    assert run_cli("plan", repo.url, "--ref", injected) == 3
    assert "starts with '-'" in capsys.readouterr().err
    assert run_cli("plan", f"--upload-pack=touch {witness}") in (2, 3)
    assert run_cli("plan", repo.url, "--base", "--output=/tmp/x") == 3
    assert not witness.exists()


def test_a_plan_file_carries_only_a_full_commit_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "git", folder_with(tmp_path / "t", project("a")))
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", repo.url, "--out", str(plan_file)) == 0
    data = json.loads(plan_file.read_text())
    assert len(data["source"]["revision"]) == 40
    witness = tmp_path / "pwned"
    data["source"]["revision"] = f"--upload-pack=touch {witness}; git-upload-pack"
    plan_file.write_text(json.dumps(data))
    capsys.readouterr()
    assert run_cli("apply", "--plan", str(plan_file), "--yes") == 3
    assert "not a full commit id" in capsys.readouterr().err
    assert not witness.exists()


@pytest.mark.parametrize(
    "content,said",
    [
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"actions": "x"}', "actions"),
    ],
    ids=["binary", "deep", "wrong-shape"],
)
def test_a_plan_file_that_is_not_a_plan_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, said: str
) -> None:
    folder = folder_with(tmp_path / "t", project("a"))
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(content)
    assert run_cli("apply", str(folder), "--plan", str(plan_file), "--yes") == 3
    err = capsys.readouterr().err
    assert f"{plan_file}: not a usable plan file" in err and said in err
    assert not sandbox_db(folder).exists()  # no platform was contacted


def test_a_plan_file_over_the_size_bound_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply, "MAX_PLAN_BYTES", 4096)
    folder = folder_with(tmp_path / "t", project("a"))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"actions": [], "padding": "x" * 5000}))
    assert run_cli("apply", str(folder), "--plan", str(plan_file), "--yes") == 3
    assert "not a usable plan file: larger than 0 MiB" in capsys.readouterr().err
    assert not sandbox_db(folder).exists()


def test_a_plan_read_from_a_pipe_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `apply --plan <(curl ...)`: the plan is read as a stream, not by the size a pipe
    # does not have.
    folder = folder_with(tmp_path / "t", project("a"))
    saved = tmp_path / "plan.json"
    assert run_cli("plan", str(folder), "--out", str(saved)) == 0
    pipe = tmp_path / "plan.pipe"
    os.mkfifo(pipe)

    def feed() -> None:
        with pipe.open("wb") as writer:
            writer.write(saved.read_bytes())

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert run_cli("apply", str(folder), "--plan", str(pipe), "--yes") == 0
    finally:
        writer.join(10)
    capsys.readouterr()
    assert run_cli("plan", str(folder), "--detailed-exitcode") == 0


# --- 2. ${file:...} stays inside the repository ----------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "/etc/hostname",
        "../../../../../../../etc/passwd",
        "~/.bashrc",
        "/proc/self/environ",
        "/dev/zero",
        "fifo",
        "big.txt",
        "out-link",
    ],
)
def test_file_references_read_only_regular_files_inside_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("runner secret")
    folder = folder_with(tmp_path / "m", SECRET.format(value=f"${{file:{reference}}}"))
    os.mkfifo(folder / "manifests" / "fifo")
    (folder / "manifests" / "big.txt").write_text("x" * (1024 * 1024 + 1))
    (folder / "manifests" / "out-link").symlink_to(outside)
    assert run_cli("apply", "--yes", str(folder)) == 3
    err = capsys.readouterr().err
    assert "m0.yaml:5:" in err
    assert "runner secret" not in err
    assert not (folder / ".reconciler" / "sandbox.db").exists()  # nothing was contacted


def test_a_folder_allowed_by_name_may_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = tmp_path / "ci-secrets"
    mount.mkdir()
    (mount / "token").write_text("s3cret")
    config = (
        "manifests: [manifests/]\nstate: sqlite:///.reconciler/state.db\n"
        f"files: {{allow: ['{mount}']}}\n"
    )
    reference = f"${{file:{mount}/token}}"
    folder = folder_with(tmp_path / "m", SECRET.format(value=reference), config=config)
    assert run_cli("apply", "--yes", str(folder)) == 0
    assert "s3cret" not in capsys.readouterr().out


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_package_path_outside_answers_the_same_whether_it_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], relative: bool
) -> None:
    """A manifest cannot learn which paths exist on the runner from the answer."""
    (tmp_path / "exists").mkdir()
    answers = []
    for name in ("exists", "missing"):
        source = f"../../{name}" if relative else str(tmp_path / name)
        folder = folder_with(
            tmp_path / f"m-{name}",
            "apiVersion: insights/v1\nkind: Package\nmetadata: {name: p}\n"
            f"spec: {{version: 1.0.0, source: '{source}'}}\n",
        )
        capsys.readouterr()
        assert run_cli("validate", str(folder)) == 3
        err = capsys.readouterr().err
        answers.append(err.replace(source, "SOURCE").replace(str(folder), "FOLDER"))
    assert answers[0] == answers[1]
    assert "outside the manifests repository" in answers[0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(
        st.sampled_from(["..", ".", "sub", "link", "inside.txt", "outside.txt"]),
        min_size=1,
        max_size=6,
    ),
    absolute=st.booleans(),
)
def test_no_path_outside_the_root_is_ever_read(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], absolute: bool
) -> None:
    from reconciler.manifests.values import FileAccess, Resolver, VariableError

    base = tmp_path_factory.mktemp("root")
    root = base / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inside.txt").write_text("inside")
    (base / "outside.txt").write_text("OUTSIDE")
    (root / "sub" / "link").symlink_to(base)
    path = "/".join(parts)
    reference = str(root / "sub" / path) if absolute else path
    resolver = Resolver(base=root / "sub", files=FileAccess(root))
    try:
        value = resolver.text(f"${{file:{reference}}}")
    except VariableError:
        return
    try:
        revealed = value.reveal() if not isinstance(value, str) else value
    except VariableError:
        return
    assert "OUTSIDE" not in revealed


def test_a_manifest_symlinked_from_outside_and_a_symlinked_folder_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "p.yaml").write_text(project("stolen"))
    folder = folder_with(tmp_path / "m", project("a"))
    (folder / "manifests" / "p.yaml").symlink_to(elsewhere / "p.yaml")
    (folder / "manifests" / "more").symlink_to(elsewhere)
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "p.yaml is a symlink to a file outside the manifests folder" in err
    assert "more is a symlinked folder, which reconciler does not follow" in err


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(os.mkfifo, id="a FIFO"),
        pytest.param(lambda path: path.symlink_to(path.parent / "gone.yaml"), id="a dangling link"),
        pytest.param(
            lambda path: (
                path.symlink_to(path.parent / "other.yaml"),
                (path.parent / "other.yaml").symlink_to(path),
            ),
            id="a link loop",
        ),
    ],
)
def test_a_manifest_that_is_not_a_regular_file_is_reported_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any
) -> None:
    # A FIFO was opened and read: validate waited for a writer for ever. A link loop was
    # an internal error (pathlib's resolve raises on one).
    folder = folder_with(tmp_path / "m", project("a"))
    make(folder / "manifests" / "odd.yaml")
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "reconciler.yaml:1:" in err
    assert "manifests/odd.yaml is not a regular file" in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(os.mkfifo, id="a FIFO"),
        pytest.param(lambda path: path.mkdir(), id="a folder"),
        pytest.param(lambda path: path.symlink_to(path.parent / "gone.yaml"), id="a dangling link"),
    ],
)
def test_a_configuration_that_is_not_a_regular_file_is_refused_not_taken_as_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any
) -> None:
    # It was read as "no reconciler.yaml": the defaults then planned what the
    # repository never said.
    folder = folder_with(tmp_path / "m", project("a"))
    (folder / "reconciler.yaml").unlink()
    make(folder / "reconciler.yaml")
    assert run_cli("plan", str(folder)) == 3
    assert "reconciler.yaml is not a regular file" in capsys.readouterr().err
    assert not (folder / ".reconciler" / "state.db").exists()


def test_a_file_reference_with_a_control_character_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # '\0' in a double-quoted YAML string is a NUL, which Python refuses to pass to the
    # file system (ValueError): it was an internal error.
    folder = folder_with(tmp_path / "m", project("a", description="${file:a\\0b}"))
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "m0.yaml:4:" in err and "holds a control character" in err


# --- 3. nothing in the source tree overrides what it says ------------------------------


def test_a_commit_that_tracks_reconciler_state_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "git", folder_with(tmp_path / "t", project("a")))
    repo.write(".reconciler/state.db", "an inventory that claims everything")
    git(repo.work, "add", "-f", ".reconciler/state.db")
    repo.commit("state")
    git(repo.work, "push", "-q", "origin", "main")
    assert run_cli("plan", repo.url) == 3
    assert "tracks .reconciler/" in capsys.readouterr().err
    assert run_cli("validate", str(repo.work)) == 0
    assert "git tracks 1 file(s) under .reconciler/" in capsys.readouterr().err


# --- 4. the mass-delete guard holds -----------------------------------------------------


@pytest.mark.parametrize("how", ["orphan", "deleted by hand"])
def test_removing_a_targets_manifests_never_deletes_everything_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    orphan = ", deletionPolicy: Orphan" if how == "orphan" else ""
    folder = folder_with(tmp_path / "m", project("a", extra=orphan), project("b"), project("c"))
    assert run_cli("apply", "--yes", str(folder)) == 0
    if how == "deleted by hand":
        sandbox = Store(sandbox_db(folder))
        assert sandbox.delete("project", "a")
        sandbox.close()
    for manifest in (folder / "manifests").glob("*.yaml"):
        manifest.unlink()
    (folder / "manifests" / "keep.txt").write_text("")
    before = sandbox_calls(folder, capsys)
    assert run_cli("apply", "--yes", "--prune", str(folder)) == 1
    assert "keeps none" in capsys.readouterr().out
    assert sandbox_calls(folder, capsys) == before


# --- 5. a saved plan applies only where it was made -------------------------------------


def test_a_saved_plan_applies_only_to_its_own_folder_profile_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = folder_with(tmp_path / "a", project("a"))
    b = folder_with(tmp_path / "b", project("b"))
    assert run_cli("apply", "--yes", str(b)) == 0
    plan_a = tmp_path / "a.json"
    assert run_cli("plan", str(a), "--out", str(plan_a)) == 0
    capsys.readouterr()
    assert run_cli("apply", str(b), "--plan", str(plan_a), "--yes") == 3
    assert "the plan was made from" in capsys.readouterr().err
    assert run_cli("apply", "--plan", str(plan_a), "--profile", "prod", "--yes") == 3
    assert "--profile" in capsys.readouterr().err
    assert run_cli("apply", "--plan", str(plan_a), "--prune", "--yes") == 3
    # Another state: the same folder, its state replaced.
    (a / ".reconciler" / "state.db").unlink()
    assert run_cli("apply", "--plan", str(plan_a), "--yes") == 3
    assert "another state" in capsys.readouterr().err


def test_an_edited_plan_with_a_recomputed_fingerprint_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.diff import digest

    folder = folder_with(
        tmp_path / "m", project("guarded", extra=", protect: true"), project("other")
    )
    assert run_cli("apply", "--yes", str(folder)) == 0
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", str(folder), "--out", str(plan_file)) == 0
    data = json.loads(plan_file.read_text())
    for action in data["actions"]:
        if action["name"] == "guarded":
            action["action"] = "delete"
    data["summary"]["delete"], data["summary"]["noop"] = 1, data["summary"]["noop"] - 1
    data.pop("fingerprint")
    data["fingerprint"] = digest(data)
    plan_file.write_text(json.dumps(data))
    before = sandbox_calls(folder, capsys)
    assert run_cli("apply", "--plan", str(plan_file), "--yes") == 3
    assert "signature does not match" in capsys.readouterr().err
    assert sandbox_calls(folder, capsys) == before


# --- 6. a missing manifests folder and other configuration mistakes ---------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("manifests: [manifest/]\n", "reconciler.yaml:1:13: manifests entry 'manifest/' names"),
        ("manifests: ['/etc/*.yaml']\n", "is an absolute path"),
        (
            "targets: {pachyderm: {provider: pachyderm, url: embedded, timeout: -1}}\n",
            "timeout",
        ),
        (
            "targets: {pachyderm: {provider: pachyderm, url: 'ftp://host'}}\n",
            "neither 'embedded' nor an http:// or https:// address",
        ),
    ],
)
def test_configuration_mistakes_are_input_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, expected: str
) -> None:
    folder = folder_with(tmp_path / "m", project("a"), config=config)
    assert run_cli("validate", str(folder)) == 3
    assert expected in capsys.readouterr().err


# --- 7. the platform's own words reach the user -----------------------------------------


def test_a_refusal_shows_the_platforms_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = """\
apiVersion: pachyderm/v1
kind: Repo
metadata: {{name: {name}}}
"""
    pipeline = """\
apiVersion: pachyderm/v1
kind: Pipeline
metadata: {name: edges}
spec:
  transform: {image: "python:3.12", cmd: [python, x.py]}
  input: {pfs: {repo: images, glob: "/*"}}
"""
    folder = folder_with(tmp_path / "m", repo.format(name="images"), repo.format(name="edges"))
    assert run_cli("apply", "--yes", str(folder)) == 0
    (folder / "manifests" / "m1.yaml").write_text(pipeline)  # repo edges stays, unmanaged
    capsys.readouterr()
    assert run_cli("apply", "--yes", str(folder)) == 1
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "repo default/edges already exists" in text
    assert "TypeError" not in text and "Traceback" not in text


# --- 8. a lock holder that lost its lock stops ------------------------------------------


def _held(store: SqliteStore, now: list[float]) -> AbstractAsyncContextManager[Lease]:
    """The lock of target `pachyderm`, on a clock the test moves."""
    options = LockOptions(heartbeat=10, stale_after=60)
    return held(
        store,
        ["pachyderm"],
        command="apply",
        revision=None,
        options=options,
        clock=lambda: now[0],
    )


def test_a_run_whose_lock_was_taken_over_makes_no_further_call(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    now = [1000.0]

    async def scenario() -> str:
        async with _held(store, now) as lease:
            lease.check()  # held
            now[0] += 65  # paused (SIGSTOP) past staleness; another run takes over
            other = LockHolder("pachyderm", "other", "host-b", 4242, "apply", None, now[0], now[0])
            store.acquire_lock(other, stale_before=now[0] - 60)
            with pytest.raises(LockLost) as lost:
                lease.check()
            with pytest.raises(LockLost):
                lease.check()  # and stays lost
            return str(lost.value)

    message = asyncio.run(scenario())
    assert "is now held by apply on host host-b (pid 4242)" in message
    assert store.locks()["pachyderm"].token == "other"  # its lock was not released by us


def test_a_run_paused_while_its_heartbeat_ran_makes_no_call_on_a_lock_taken_meanwhile(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    now = [1000.0]
    beat = store.heartbeat

    def paused_after_the_answer(token: str, at: float) -> int:
        # The store refreshed the lock; then this process stopped (SIGSTOP) before it
        # read the answer, past staleness, and another run took the lock over.
        count = beat(token, at)
        now[0] += 65
        other = LockHolder("pachyderm", "other", "host-b", 4242, "apply", None, now[0], now[0])
        store.acquire_lock(other, stale_before=now[0] - 60)
        store.heartbeat = beat  # type: ignore[method-assign]
        return count

    async def scenario() -> None:
        async with _held(store, now) as lease:
            now[0] += 20  # a beat is overdue: the check sends one
            store.heartbeat = paused_after_the_answer  # type: ignore[method-assign,assignment]
            with pytest.raises(LockLost, match="is now held by apply on host host-b"):
                lease.check()

    asyncio.run(scenario())
    assert store.locks()["pachyderm"].token == "other"


def test_unlock_refuses_a_live_holder_on_this_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path / "m", project("a"))
    store = SqliteStore(folder / ".reconciler" / "state.db")
    me = LockHolder("pachyderm", "t", socket.gethostname(), os.getpid(), "apply", None, 1.0, 1.0)
    store.acquire_lock(me, stale_before=0)
    assert run_cli("unlock", "pachyderm", str(folder), "--yes") == 1
    assert f"(pid {os.getpid()}) is alive on this host" in capsys.readouterr().err
    assert "pachyderm" in store.locks()
    assert run_cli("unlock", "pachyderm", str(folder), "--yes", "--force") == 0
    assert "it was held by apply on host" in capsys.readouterr().out
    assert store.locks() == {}


# --- 9. credentials never printed -------------------------------------------------------


def test_status_doctor_and_migrate_never_print_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = (
        "manifests: [manifests/]\nstate: sqlite:///.reconciler/state.db\n"
        "targets: {pachyderm: {provider: pachyderm, url: 'http://robot:t0ken@127.0.0.1:9',"
        " retries: 0, timeout: 2}}\n"
    )
    folder = folder_with(tmp_path / "m", project("a"), config=config)
    assert run_cli("status", str(folder)) == 1
    assert run_cli("doctor", str(folder), "--format", "json") == 1
    assert (
        run_cli("state", "migrate", str(folder), "--to", "postgresql://u:pw0rd@127.0.0.1:9/x") == 1
    )
    printed = capsys.readouterr()
    assert "t0ken" not in printed.out + printed.err
    assert "pw0rd" not in printed.out + printed.err


@given(
    user=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8),
    password=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=20),
    scheme=st.sampled_from(["https", "http", "postgresql", "ssh", "git+https"]),
    before=st.text(max_size=20),
)
def test_masking_hides_every_password(user: str, password: str, scheme: str, before: str) -> None:
    text = f"{before} {scheme}://{user}:{password}@host.example:5/path?q=1 failed"
    assert f":{password}@" not in masked(text)


# --- 10. bounded waits ------------------------------------------------------------------


def test_a_day_long_retry_after_is_not_obeyed_in_silence() -> None:
    import httpx

    from reconciler.errors import RetryableError
    from reconciler.providers.http import HttpClient, _retry_after
    from reconciler.retry import Backoff

    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, headers={"retry-after": "86400"}, json={"message": "slow"})

    async def read() -> None:
        client = HttpClient(
            "http://x",
            platform="p",
            transport=httpx.MockTransport(answer),
            reads=Backoff(attempts=5, longest_wait=30),
        )
        try:
            await client.post("/a", read=True)
        finally:
            await client.aclose()

    with pytest.raises(RetryableError) as raised:
        asyncio.run(read())
    assert len(calls) == 1
    assert "asked to wait 86400s" in str(raised.value)
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    assert _retry_after("Tue, 01 Dec 2026 10:00:30 GMT", now) == 30.0


# --- 11. every problem of a document at once; no crash on deep input -------------------


def test_metadata_errors_do_not_hide_spec_errors_and_deep_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: 7}\nspec: {nonsense: 1}\n"
    deep = project("d").replace('""', "[" * 2000 + "]" * 2000)
    folder = folder_with(tmp_path / "m", bad, deep)
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "m0.yaml:3:" in err and "metadata.name" in err
    assert "m0.yaml:4:" in err and "nonsense" in err
    # Said where the nesting passes 100 levels (the 101st bracket), the parser stopped there.
    assert re.search(r"m1\.yaml:4:\d+: this document nests", err)
    assert "Traceback" not in err


# --- 15. status and unlock work when the manifests do not load ---------------------------


def test_status_and_unlock_work_with_manifests_that_do_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path / "m", project("a"))
    assert run_cli("apply", "--yes", str(folder)) == 0
    store = SqliteStore(folder / ".reconciler" / "state.db")
    dead = LockHolder("pachyderm", "t", "elsewhere", 1, "apply", None, 1.0, 1.0)
    store.acquire_lock(dead, stale_before=0)
    (folder / "manifests" / "m0.yaml").write_text("kind: [broken\n")
    capsys.readouterr()
    assert run_cli("status", str(folder)) == 1
    out = capsys.readouterr().out
    assert "the manifests do not load" in out and "elsewhere" in out
    assert run_cli("unlock", "pachyderm", str(folder), "--yes") == 0
    assert store.locks() == {}


# --- 13. pull-request plans cannot send credentials where the pull request says -----------


def test_a_pull_request_that_moves_a_target_gets_no_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHYDERM_TOKEN", "token-for-plans")
    config = (
        "manifests: [manifests/]\nstate: sqlite:///.reconciler/state.db\n"
        "targets: {pachyderm: {provider: pachyderm, url: embedded,"
        " auth: {token: '${env:PACHYDERM_TOKEN}'}}}\n"
    )
    repo = GitRepo(tmp_path / "git", folder_with(tmp_path / "t", project("a"), config=config))
    git(repo.work, "checkout", "-q", "-b", "feature")
    repo.write("manifests/m0.yaml", project("a", "changed"))
    repo.commit("an ordinary change")
    assert run_cli("plan", str(repo.work), "--trusted-config", "main") == 0
    repo.replace("reconciler.yaml", "url: embedded", "url: 'https://attacker.example'")
    repo.commit("send the token elsewhere")
    capsys.readouterr()
    assert run_cli("plan", str(repo.work), "--trusted-config", "main") == 3
    err = capsys.readouterr().err
    assert "changes target 'pachyderm' (url)" in err
    repo.replace("reconciler.yaml", "url: 'https://attacker.example'", "url: embedded")
    repo.replace("reconciler.yaml", "PACHYDERM_TOKEN", "RECONCILER_GIT_TOKEN")
    repo.commit("send another secret")
    assert run_cli("plan", str(repo.work), "--trusted-config", "main") == 3
    assert "changes target 'pachyderm' (auth)" in capsys.readouterr().err


def test_a_plan_made_from_a_url_with_credentials_can_be_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "git", folder_with(tmp_path / "t", project("a")))
    repo.write("reconciler.yaml", f"manifests: [manifests/]\nstate: sqlite:///{tmp_path}/s.db\n")
    repo.commit("absolute state")
    git(repo.work, "push", "-q", "origin", "main")
    url = repo.url.replace("file://", "file://deploy:pa55word@")
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", url, "--out", str(plan_file)) == 0
    recorded = json.loads(plan_file.read_text())["source"]["path"]
    assert recorded == repo.url and "pa55word" not in plan_file.read_text()
    capsys.readouterr()
    assert run_cli("apply", "--plan", str(plan_file), "--yes") == 0, capsys.readouterr().err


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_no_saved_plan_applies_under_another_state_or_after_an_edit(data: st.DataObject) -> None:
    """Whatever is edited in a signed plan (its digest recomputed, as an attacker would),
    it does not verify under its state's key; and no plan verifies under another key."""
    from reconciler.diff import digest
    from reconciler.manifests import ResourceId
    from reconciler.plan import Action, Binding, Plan, PlanOptions, Source

    rid = ResourceId.parse("pachyderm:Project/a")
    assert rid is not None
    key, other = b"k" * 32, b"o" * 32
    plan = Plan(
        Source("/m", "a" * 40, None),
        (Action(rid, "noop", desired_digest="sha256:1", observed_digest="sha256:1"),),
        options=PlanOptions(),
        binding=Binding("lineage", "sha256:inv", ("pachyderm",)),
    ).signed(key)
    body = plan.to_json()
    assert not Plan.from_json(body).verify(other)
    paths = [
        ("actions", 0, "action"),
        ("options", "max_deletes"),
        ("options", "prune"),
        ("options", "allow_mass_delete"),
        ("state", "lineage"),
        ("state", "inventory"),
        ("source", "path"),
        ("source", "profile"),
    ]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(
        st.one_of(
            st.sampled_from(["delete", "replace"]),
            st.booleans(),
            st.integers(0, 99),
            st.text(max_size=8),
        )
    )
    edited = json.loads(json.dumps(body))
    node = edited
    for part in path[:-1]:
        node = node[part]
    if node[path[-1]] == value:
        return
    node[path[-1]] = value
    if path == ("actions", 0, "action") and value in ("delete", "replace"):
        edited["summary"]["noop"], edited["summary"][value] = 0, 1
    edited.pop("fingerprint")
    edited["fingerprint"] = digest(edited)
    try:
        parsed = Plan.from_json(edited)
    except InputError:
        return
    assert not parsed.verify(key)


def test_a_lock_that_cannot_be_confirmed_before_a_change_stops_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    now = [1000.0]

    def unreachable(token: str, at: float) -> int:
        raise OperationalError("state store: database is locked")

    async def scenario() -> None:
        async with _held(store, now) as lease:
            now[0] += 20  # a beat is overdue
            store.heartbeat = unreachable  # type: ignore[method-assign,assignment]
            with pytest.raises(LockLost, match="could not be confirmed"):
                lease.check()

    with caplog.at_level("WARNING", logger="reconciler.state.locks"):
        asyncio.run(scenario())
    # The failing heartbeat itself is logged, with the store's own words.
    assert any(
        "lock heartbeat failed" in r.getMessage() and "database is locked" in r.getMessage()
        for r in caplog.records
    )


def test_a_platform_that_echoes_a_secret_in_its_error_does_not_get_it_printed_or_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some platforms quote the request in their errors. The executor takes the
    sensitive values the action sent (and their base64, as a Kubernetes secret holds
    them) out of the message before it prints, logs or stores it."""
    value = "hunter2-s3cret"
    monkeypatch.setenv("DB_TOKEN", value)

    async def echoing(self: Any, name: str, type_: str, data: dict[str, str]) -> None:
        encoded = base64.b64encode(data["token"].encode()).decode()
        raise PermanentError(
            f"pachd: CreateSecret: invalid secret: token={data['token']} data={encoded}"
        )

    monkeypatch.setattr(PachdClient, "create_secret", echoing)
    folder = folder_with(tmp_path / "t", SECRET.format(value="${env:DB_TOKEN}"))
    assert run_cli("apply", str(folder), "--yes", "--format", "json") == 1
    out = capsys.readouterr()
    assert "invalid secret: token=(sensitive) data=(sensitive)" in out.out + out.err
    assert value not in out.out + out.err
    state = (folder / ".reconciler" / "state.db").read_bytes()
    assert b"invalid secret" in state and value.encode() not in state
    assert base64.b64encode(value.encode()) not in state


def forges_nothing(output: str) -> None:
    """No line of `output` is a GitHub Actions workflow command, and no terminal escape
    or carriage return is in it."""
    assert not any(line.lstrip().startswith("::") for line in output.splitlines()), output
    assert "\x1b" not in output and "\r" not in output, output


def test_an_error_cannot_put_a_line_or_an_escape_of_the_manifests_into_a_ci_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GitHub Actions reads a line that starts with '::' as a workflow command; an ESC
    # starts a terminal escape sequence. A pull request writes both into a value, a kind
    # and a file name that the error quotes.
    folder = folder_with(
        tmp_path / "t",
        'apiVersion: pachyderm/v1\nkind: Project\nmetadata: {name: "a\\n::error::forged'
        ' \\e[31mred"}\n',
        'apiVersion: pachyderm/v1\nkind: "Repo\\r\\n::add-mask::x"\nmetadata: {name: b}\n',
    )
    (folder / "manifests" / "m0.yaml").rename(folder / "manifests" / "m\n::warning::x.yaml")
    assert run_cli("validate", str(folder)) == 3
    err = capsys.readouterr().err
    assert "forged" in err and "add-mask" in err and "::warning::x.yaml" in err
    forges_nothing(err)
    assert "a\\n::error::forged \\u001b[31mred" in err  # shown, as escapes


def test_a_plan_cannot_put_a_line_or_an_escape_of_the_manifests_into_a_ci_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A key is printed as it is written (in a path: `spec.transform.env.<key>`); a pull
    # request writes a line break, a workflow command and an ESC into one.
    pipeline = (
        "apiVersion: pachyderm/v1\nkind: Pipeline\nmetadata: {{name: p, project: a}}\n"
        'spec:\n  transform: {{image: alpine, cmd: [sh], env: {{"X\\n::error::forged'
        ' \\e[31m": "{value}"}}}}\n  input: {{pfs: {{repo: r, glob: "/*"}}}}\n'
    )
    repo = "apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {name: r, project: a}\n"
    folder = folder_with(tmp_path / "t", project("a"), repo, pipeline.format(value="v"))
    assert run_cli("apply", str(folder), "--yes") == 0
    (folder / "manifests" / "m2.yaml").write_text(pipeline.format(value="w"))
    for output in ("text", "markdown", "json"):
        capsys.readouterr()
        assert run_cli("plan", str(folder), "--format", output) == 0
        out = capsys.readouterr().out
        assert "forged" in out
        forges_nothing(out)


def test_a_configuration_symlinked_from_outside_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("state: sqlite:////tmp/someone-elses-state.db\n")
    folder = folder_with(tmp_path / "m", project("a"))
    (folder / "reconciler.yaml").unlink()
    (folder / "reconciler.yaml").symlink_to(elsewhere)
    assert run_cli("plan", str(folder)) == 3
    assert "reconciler.yaml is a symlink to a file outside" in capsys.readouterr().err
