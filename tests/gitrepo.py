"""Real git repositories in temporary folders: a work tree and a bare remote."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class GitRepo:
    """A work tree at `root/work` on branch main, pushed to a bare `root/remote.git`."""

    def __init__(self, root: Path, template: Path | None = None) -> None:
        self.work = root / "work"
        self.bare = root / "remote.git"
        self.work.mkdir(parents=True)
        git(self.work, "init", "-q", "-b", "main")
        if template is not None:
            shutil.copytree(
                template,
                self.work,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(".reconciler"),
            )
        (self.work / ".gitignore").write_text(".reconciler/\n")
        self.commit("first")
        git(root, "clone", "-q", "--bare", str(self.work), str(self.bare))
        git(self.work, "remote", "add", "origin", str(self.bare))
        git(self.work, "fetch", "-q", "origin")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def write(self, relative: str, text: str) -> None:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def replace(self, relative: str, old: str, new: str) -> None:
        path = self.work / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new))

    def commit(self, message: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")

    def branch(self, name: str) -> None:
        git(self.work, "switch", "-q", "-c", name)

    def push(self, branch: str = "main") -> None:
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
