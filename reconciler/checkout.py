"""Layer 7: where the manifests come from: a local folder, or a git URL at a ref.

Rule: the only module that runs git. Credentials come from the environment and reach git
through the environment too (never its command line, where `ps` would show them); every
text git prints passes through `Git.scrub` before it can reach a user.

- A local folder is read in place; when it lies in a git work tree its revision is the
  commit checked out (with `+dirty` when the folder has uncommitted changes).
- A git URL (`https://`, `ssh://`, `git@host:path`, `file://`) is fetched shallow (depth 1)
  into a clone cached per URL under `$RECONCILER_CACHE` (default
  `$XDG_CACHE_HOME/reconciler`), reused by the next run: a fetch brings only what
  changed (git's maintenance after one fetch in `MAINTAIN_EVERY`, not after each).
  `URL//sub/folder` reads the manifests from a folder of the repository.
  A fetch resets every file git tracks to the commit fetched and leaves untracked files
  alone: `.reconciler/` (the embedded sandbox, a relative SQLite state) stays.
- `base(...)` writes the manifests as they were at another ref into a temporary folder,
  for `plan --base`.

Credentials for HTTPS: `RECONCILER_GIT_TOKEN` (sent as HTTP basic auth with the user
`RECONCILER_GIT_USERNAME`, default `x-access-token`, which GitHub and GitLab accept) or a
user and password in the URL itself. SSH uses the usual keys and `GIT_SSH_COMMAND`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reconciler import redact
from reconciler.errors import InputError, OperationalError, Problem
from reconciler.manifests import cachefile
from reconciler.manifests.serve_config import reads_as_git_option

TOKEN_VARIABLE = "RECONCILER_GIT_TOKEN"
USERNAME_VARIABLE = "RECONCILER_GIT_USERNAME"
CACHE_VARIABLE = cachefile.CACHE_VARIABLE

_REMOTE = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
_MISSING_REF = ("couldn't find remote ref", "not our ref", "unknown revision", "bad revision")


def is_remote(location: str) -> bool:
    """Whether a PATH argument names a git repository rather than a local folder."""
    return bool(_REMOTE.match(location))


def masked(url: str) -> str:
    """`url` without the user and password it may carry: safe to print."""
    return redact.masked(url)


@dataclass(frozen=True)
class Origin:
    """A parsed source: a local folder, or a git URL, a ref and a folder inside it."""

    location: str
    ref: str | None = None
    subdir: str = ""

    @property
    def remote(self) -> bool:
        return is_remote(self.location)

    @property
    def shown(self) -> str:
        """The source as messages and logs name it: never a credential."""
        if not self.remote:
            return self.location
        return masked(self.location) + (f"//{self.subdir}" if self.subdir else "")

    @property
    def recorded(self) -> str:
        """The source as a saved plan records it, to be found again by `apply --plan`: a
        local folder's absolute path; a URL without credentials (they come from the
        environment at apply: RECONCILER_GIT_TOKEN), with its //folder."""
        if not self.remote:
            return str(Path(self.location).resolve())
        url = redact.without_credentials(self.location)
        return url + (f"//{self.subdir}" if self.subdir else "")

    @staticmethod
    def parse(location: str, ref: str | None = None) -> Origin:
        _refuse_option("source", location)
        if ref is not None:
            _refuse_option("--ref", ref)
        if not is_remote(location):
            if ref is not None:
                raise InputError(
                    [
                        Problem(
                            "--ref",
                            message=f"--ref needs a git URL; '{location}' is a local folder",
                            hint="give a git URL (https://..., ssh://..., git@host:repo,"
                            " file://...), or leave --ref out",
                        )
                    ]
                )
            return Origin(str(Path(location)))
        scheme, sep, rest = location.partition("://")
        head, slashes, subdir = (rest if sep else location).partition("//")
        url = f"{scheme}{sep}{head}" if sep else head
        subdir = subdir.strip("/") if slashes else ""
        if ".." in PurePosixPath(subdir).parts:
            raise InputError(
                [
                    Problem(
                        "source",
                        message=f"the folder '{subdir}' after // climbs out of the repository"
                        " with '..'",
                        hint="name a folder inside the repository after //",
                    )
                ]
            )
        return Origin(url, ref, subdir)


@dataclass(frozen=True)
class Checkout:
    """Manifests on disk and the commit they are at (None outside git)."""

    folder: Path
    revision: str | None
    origin: Origin
    repository: Path | None = None
    """The work tree or cached clone the folder lies in, when it is in git."""


COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")
"""A full commit id (SHA-1 or SHA-256): the only revision a saved plan may carry."""


def _refuse_option(what: str, value: str) -> None:
    """git reads an argument that starts with `-` as an option (`--upload-pack=CMD` runs
    CMD): a source or ref from a flag, a plan file or a webhook never may."""
    if reads_as_git_option(value):
        raise InputError(
            [
                Problem(
                    what,
                    message=f"'{value}' is not a usable {what}: it starts with '-' or holds"
                    " a control character, which git would read as an option",
                    hint="name a branch, tag or commit (or a URL) without a leading '-'",
                )
            ]
        )


class Git:
    """The git command line, with credentials from the environment and output scrubbed."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        if shutil.which("git", path=self.environ.get("PATH")) is None:
            raise OperationalError("git is not installed or not on PATH: install git")
        self._secrets = [
            s for s in (self.environ.get(TOKEN_VARIABLE), self.environ.get("GIT_PASSWORD")) if s
        ]

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return masked(text)

    def env(self) -> dict[str, str]:
        env = {
            **self.environ,
            "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
            "GIT_ASKPASS": "",
            "LC_ALL": "C",  # messages we can recognise
        }
        token = self.environ.get(TOKEN_VARIABLE)
        if token:
            user = self.environ.get(USERNAME_VARIABLE, "x-access-token")
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            count = int(env.get("GIT_CONFIG_COUNT", "0"))
            env["GIT_CONFIG_COUNT"] = str(count + 1)
            env[f"GIT_CONFIG_KEY_{count}"] = "http.extraHeader"
            env[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: Basic {basic}"
        return env

    def run(self, args: Sequence[str], cwd: Path, *, what: str) -> str:
        return self.output(args, cwd, what=what).decode(errors="replace")

    def output(self, args: Sequence[str], cwd: Path, *, what: str) -> bytes:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=self.env(),
                capture_output=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise OperationalError(f"{what}: cannot run git: {exc.strerror}") from None
        if done.returncode != 0:
            message = self.scrub(done.stderr.decode(errors="replace").strip())
            raise GitError(f"{what}: {message or f'git exited {done.returncode}'}")
        return done.stdout


class GitError(OperationalError):
    """A git command that failed; its message is scrubbed."""


def cache_root(environ: dict[str, str] | None = None) -> Path:
    return cachefile.cache_home(environ)


def fetch(origin: Origin, git: Git | None = None, cache: Path | None = None) -> Checkout:
    """The manifests of `origin` on disk: a local folder as it is, a git URL fetched."""
    if not origin.remote:
        folder = Path(origin.location)
        _refuse_tracked_link_out(folder, git)
        return Checkout(folder, local_revision(folder, git), origin, _toplevel(folder, git))
    git = git or Git()
    clone = (cache or cache_root(git.environ)) / "git" / _key(origin.location)
    with _locked(clone):
        sha = _fetch(git, clone, origin.location, origin.ref or "HEAD")
        _refuse_tracked_state(git, clone, sha, origin)
        # `sha` is what rev-parse printed (hex), never an argument from outside.
        git.run(["checkout", "--quiet", "--force", "--detach", sha], clone, what="git checkout")
    folder = clone / origin.subdir if origin.subdir else clone
    if origin.subdir and Path(os.path.realpath(folder)) != Path(
        os.path.realpath(clone), *PurePosixPath(origin.subdir).parts
    ):
        # The commit decides what the path is: a link it tracks (`manifests -> /home`)
        # would make the runner's own files the manifests, and their values the errors.
        raise InputError(
            [
                Problem(
                    origin.shown,
                    message=f"the folder '{origin.subdir}' at {sha[:12]} is, or lies under,"
                    " a symbolic link (or the path climbs out with '..'): it is not read",
                    hint="name the folder itself after // in the source, not a link to it",
                )
            ]
        )
    if not folder.is_dir():
        raise InputError(
            [
                Problem(
                    origin.shown,
                    message=f"the repository has no folder '{origin.subdir}' at {sha[:12]}",
                    hint="check the path after // in the source",
                )
            ]
        )
    return Checkout(folder, sha, origin, clone)


def _refuse_tracked_link_out(folder: Path, git: Git | None) -> None:
    """A local folder named through a symbolic link that a git work tree tracks and that
    leads out of it: a checked-out pull request chooses what that link is (`teams/a ->
    /home/runner`), and the runner's own files would become the manifests. A link no
    work tree tracks is the user's own doing, and followed."""
    given = folder.absolute()
    real = Path(os.path.realpath(given))
    if real == given:
        return
    link = next((p for p in (given, *given.parents) if p.is_symlink()), None)
    if link is None:
        return
    top = _toplevel(link.parent, git)
    if top is None:
        return
    real_top = Path(os.path.realpath(top))
    if real == real_top or real_top in real.parents:
        return
    # Only a link the work tree tracks is the commit's doing; an untracked one (a home
    # folder kept in git, its ~/projects linked elsewhere) is the user's.
    pathspec = f":(literal){link.name}"  # the name as it is, no glob
    listed = (git or Git()).run(["ls-files", "--", pathspec], link.parent, what="git ls-files")
    tracked = listed.strip()
    if not tracked:
        return
    raise InputError(
        [
            Problem(
                str(folder),
                message=f"{link} is a symbolic link in the git work tree {top} that leads"
                f" outside it (to {real}): it is not followed",
                hint="name the folder itself, or a folder inside the work tree",
            )
        ]
    )


STATE_FOLDER = ".reconciler"


def _refuse_tracked_state(git: Git, clone: Path, sha: str, origin: Origin) -> None:
    """A commit that tracks `.reconciler/` would, once checked out, put its own files
    where the embedded sandbox and a relative SQLite state live (an inventory that
    claims what we do not own, a sandbox that says what is there): refused unread."""
    folder = f"{origin.subdir}/{STATE_FOLDER}" if origin.subdir else STATE_FOLDER
    listed = git.run(["ls-tree", "--name-only", sha, "--", folder], clone, what="git ls-tree")
    if listed.strip():
        raise InputError(
            [
                Problem(
                    origin.shown,
                    message=f"commit {sha[:12]} tracks {folder}/, where reconciler keeps its"
                    " local state and sandbox: it is not read",
                    hint=f"remove it from git (git rm -r --cached {folder}) and add"
                    f" {STATE_FOLDER}/ to .gitignore",
                )
            ]
        )


def tracked_state(checkout: Checkout, git: Git | None = None) -> list[str]:
    """Files under the manifests folder's `.reconciler/` that git tracks (a local work
    tree): `validate` warns of them."""
    if checkout.repository is None or checkout.origin.remote:
        return []
    folder = checkout.folder if checkout.folder.is_dir() else checkout.folder.parent
    try:
        listed = (git or Git()).run(["ls-files", "--", STATE_FOLDER], folder, what="git ls-files")
    except OperationalError:
        return []
    return [line for line in listed.splitlines() if line.strip()]


def default_branch(origin: Origin, git: Git | None = None) -> str | None:
    """The branch a source follows when no ref is given: a remote's default branch (its
    HEAD), or the branch a local work tree has checked out; None when there is none."""
    git = git or Git()
    if origin.remote:
        with _scratch() as folder:
            listed = git.run(
                ["ls-remote", "--symref", "--", origin.location, "HEAD"],
                folder,
                what=f"git ls-remote {masked(origin.location)}",
            )
        for line in listed.splitlines():
            head, _, name = line.partition("\t")
            if name == "HEAD" and head.startswith("ref: refs/heads/"):
                return head.removeprefix("ref: refs/heads/")
        return None
    folder = Path(origin.location)
    start = folder if folder.is_dir() else folder.parent
    if _toplevel(start, git) is None:
        return None
    try:
        return git.run(["symbolic-ref", "--short", "-q", "HEAD"], start, what="git").strip() or None
    except OperationalError:
        return None  # a detached HEAD


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reconciler-git-") as folder:
        yield Path(folder)


def local_revision(folder: Path, git: Git | None = None) -> str | None:
    """The commit a local folder is at, `+dirty` when it has uncommitted changes; None
    outside a git work tree (or without git)."""
    top = _toplevel(folder, git)
    if top is None:
        return None
    git = git or Git()
    start = folder if folder.is_dir() else folder.parent
    try:
        sha = git.run(["rev-parse", "--verify", "HEAD"], start, what="git rev-parse").strip()
        changed = git.run(["status", "--porcelain", "--", "."], start, what="git status")
    except OperationalError:
        return None  # a repository without commits yet
    return sha + ("+dirty" if changed.strip() else "")


def base(checkout: Checkout, ref: str, dest: Path, git: Git | None = None) -> Checkout:
    """The same manifests folder as it was at `ref` (at its merge base with the
    checkout's commit when the history has one: what a pull request's "files changed"
    compares against), written under `dest`. A folder absent at that commit comes back
    empty."""
    if checkout.repository is None:
        raise InputError(
            [
                Problem(
                    "--base",
                    message=f"{checkout.folder} is not in a git work tree",
                    hint="run plan --base inside a git checkout, or on a git URL",
                )
            ]
        )
    git = git or Git()
    repo, prefix, commit = _located(git, checkout, checkout.repository, ref, "--base")
    head = checkout.revision.removesuffix("+dirty") if checkout.revision else None
    if head:
        # Unrelated or shallow history has none: then compare with the ref itself.
        with contextlib.suppress(OperationalError):
            commit = git.run(
                ["merge-base", "--end-of-options", commit, head], repo, what="git merge-base"
            ).strip()
    return _written(git, checkout, repo, prefix, commit, ref, dest)


def at(checkout: Checkout, ref: str, dest: Path, git: Git | None = None) -> Checkout:
    """The same manifests folder exactly as it was at `ref` (a commit, branch or tag; for
    `rollback`), written under `dest`, with the checkout's `.reconciler/` (the embedded
    sandbox, a relative SQLite state) linked in: an earlier revision is applied to the
    same targets and state as now."""
    if checkout.repository is None:
        raise InputError(
            [
                Problem(
                    checkout.origin.shown,
                    message="not in a git repository: there is no earlier revision",
                    hint="rollback needs a git source (a work tree, or a git URL)",
                )
            ]
        )
    git = git or Git()
    repo, prefix, commit = _located(git, checkout, checkout.repository, ref, "--to")
    written = _written(git, checkout, repo, prefix, commit, ref, dest)
    start = checkout.folder if checkout.folder.is_dir() else checkout.folder.parent
    local = start / STATE_FOLDER
    linked = (written.folder if written.folder.is_dir() else written.folder.parent) / STATE_FOLDER
    if local.is_dir() and not linked.exists():
        linked.symlink_to(local.resolve(), target_is_directory=True)
    return written


def _located(
    git: Git, checkout: Checkout, repo: Path, ref: str, option: str
) -> tuple[Path, str, str]:
    """The repository, the manifests folder's path in it, and the commit `ref` names
    (fetched from a git URL when the clone does not hold it)."""
    _refuse_option(option, ref)
    start = checkout.folder if checkout.folder.is_dir() else checkout.folder.parent
    prefix = start.resolve().relative_to(repo.resolve()).as_posix()
    try:
        commit = _resolve(git, repo, ref, option)
    except InputError:
        if not checkout.origin.remote:
            raise
        commit = _fetch(git, repo, checkout.origin.location, ref)
    return repo, "" if prefix == "." else prefix, commit


def _written(
    git: Git, checkout: Checkout, repo: Path, prefix: str, commit: str, ref: str, dest: Path
) -> Checkout:
    """The folder `prefix` of `repo` at `commit`, extracted under `dest`."""
    try:
        archive = git.output(
            ["archive", "--format=tar", "--end-of-options", commit, *([prefix] if prefix else [])],
            repo,
            what="git archive",
        )
    except OperationalError:
        archive = b""  # the folder did not exist at that commit
    dest.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            try:
                tar.extractall(dest, filter="data")
            except tarfile.FilterError as exc:
                # A link the commit tracks that leads out of the folder (absolute, or up
                # through '..'): written out, it would make the runner's files manifests.
                raise InputError(
                    [
                        Problem(
                            checkout.origin.shown,
                            message=f"{ref} ({commit[:12]}) tracks {exc.tarinfo.name}, a link"
                            " that leads outside the repository: that revision is not read",
                            hint="replace the link by the file or folder it stands for",
                        )
                    ]
                ) from None
    folder = dest / prefix if prefix else dest
    folder.mkdir(parents=True, exist_ok=True)
    if checkout.folder.is_file():
        folder = folder / checkout.folder.name
    origin = Origin(checkout.origin.location, ref, checkout.origin.subdir)
    return Checkout(folder, commit, origin, dest)


def _toplevel(folder: Path, git: Git | None) -> Path | None:
    start = folder if folder.is_dir() else folder.parent
    if not start.is_dir() or (git is None and shutil.which("git") is None):
        return None
    git = git or Git()
    try:
        return Path(git.run(["rev-parse", "--show-toplevel"], start, what="git").strip())
    except OperationalError:
        return None


def _resolve(git: Git, repo: Path, ref: str, option: str = "--base") -> str:
    try:
        return git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
            repo,
            what="git rev-parse",
        ).strip()
    except OperationalError:
        raise InputError(
            [
                Problem(
                    option,
                    message=f"'{ref}' is not a commit, branch or tag of the repository",
                    hint="fetch it first (in CI: a checkout with fetch-depth: 0), or name"
                    " another ref",
                )
            ]
        ) from None


FETCH = ("fetch", "--quiet", "--depth", "1", "--no-tags", "--no-auto-maintenance")


def _fetch(git: Git, clone: Path, url: str, ref: str) -> str:
    if not (clone / ".git").exists():
        clone.mkdir(parents=True, exist_ok=True)
        git.run(["init", "--quiet"], clone, what="git init")
    try:
        git.run(
            [*FETCH, "--", url, ref],
            clone,
            what=f"git fetch {masked(url)} {ref}",
        )
    except GitError as exc:
        if any(marker in str(exc) for marker in _MISSING_REF):
            raise InputError(
                [
                    Problem(
                        masked(url),
                        message=f"no branch, tag or commit '{ref}' in the repository",
                        hint="check --ref",
                    )
                ]
            ) from None
        raise
    _maintain(git, clone)
    return (
        _fetched(clone) or git.run(["rev-parse", "FETCH_HEAD"], clone, what="git rev-parse").strip()
    )


MAINTAIN_EVERY = 16
"""Fetches between two `git maintenance run --auto` in a cached clone."""


def _maintain(git: Git, clone: Path) -> None:
    """`git maintenance run --auto` (which packs loose objects and old packs when git's
    own thresholds say so) after one fetch in `MAINTAIN_EVERY`, not after each, as `git
    fetch` would: a busy `serve` fetches a clone again and again, and the check alone
    is a process each time. The count is kept in the clone."""
    counter = clone / ".git" / "reconciler-fetches"
    try:
        count = int(counter.read_text() or "0") + 1
    except (OSError, ValueError):
        count = 1
    with contextlib.suppress(OSError):
        counter.write_text(str(count % MAINTAIN_EVERY))
    if count % MAINTAIN_EVERY == 0:
        git.run(["maintenance", "run", "--auto", "--quiet"], clone, what="git maintenance")


def _fetched(clone: Path) -> str | None:
    """The commit just fetched, from the first line of .git/FETCH_HEAD (`<hex>\\t...`,
    git's fetch.c:append_fetch_head) rather than another git process; None when it does
    not read as one (git asks then)."""
    try:
        first = (clone / ".git" / "FETCH_HEAD").read_text(errors="replace").partition("\n")[0]
    except OSError:
        return None
    sha = first.partition("\t")[0]
    return sha if len(sha) in (40, 64) and all(c in "0123456789abcdef" for c in sha) else None


def _key(url: str) -> str:
    # Without credentials: the same clone whether the token is in the URL or in the
    # environment (`apply --plan` of a plan made from a URL with credentials).
    bare = redact.without_credentials(url)
    name = re.sub(r"[^\w.-]+", "-", bare.rsplit("/", 1)[-1]).strip("-")[:40]
    return f"{name or 'repo'}-{hashlib.sha256(bare.encode()).hexdigest()[:12]}"


@contextmanager
def _locked(clone: Path) -> Iterator[None]:
    """One fetch at a time per cached clone, across processes of this machine."""
    clone.parent.mkdir(parents=True, exist_ok=True)
    with (clone.parent / f"{clone.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
