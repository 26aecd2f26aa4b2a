"""`reconciler watch`: a saved change is re-validated and re-planned (or applied) in
place; a bad edit shows its error and the next good one plans again."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.test_resilience import CLEAN_ENV

REPO = "apiVersion: pachyderm/v1\nkind: Repo\nmetadata: {{name: {name}, project: vision}}\n"


class Watcher:
    """`reconciler watch` in its own process, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--debounce", "100", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**CLEAN_ENV, "COLUMNS": "200"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, seconds: float = 30) -> list[str]:
        """The lines printed up to the first that contains `text`."""
        seen: list[str] = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"never printed {text!r}; printed:\n" + "\n".join(seen)
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return seen

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(30)


def quickstart(tmp_path: Path) -> Path:
    folder = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", folder, ignore=shutil.ignore_patterns(".reconciler"))
    return folder


def test_each_save_is_planned_again_and_a_bad_one_shows_where(tmp_path: Path) -> None:
    folder = quickstart(tmp_path)
    watcher = Watcher(str(folder))
    try:
        watcher.until("Plan: 8 to create")
        watcher.until("watching")
        (folder / "manifests" / "more.yaml").write_text(REPO.format(name="more"))
        lines = watcher.until("Plan: 9 to create")
        assert any("changed: more.yaml" in line for line in lines)
        watcher.until("watching")
        (folder / "manifests" / "more.yaml").write_text("apiVersion: pachyderm/v1\nkind: Rpo\n")
        lines = watcher.until("invalid")
        assert any("more.yaml:2" in line and "unknown kind 'Rpo'" in line for line in lines)
        watcher.until("watching")
        (folder / "manifests" / "more.yaml").unlink()
        watcher.until("Plan: 8 to create")
        watcher.until("watching")
        assert watcher.stop() == 0
    finally:
        if watcher.process.poll() is None:
            watcher.process.kill()


def test_with_apply_each_save_is_applied(tmp_path: Path) -> None:
    folder = quickstart(tmp_path)
    watcher = Watcher(str(folder), "--apply")
    try:
        watcher.until("Apply complete: 8 done")
        watcher.until("watching")
        pipelines = folder / "manifests" / "pachyderm.yaml"
        pipelines.write_text(pipelines.read_text().replace("alpine:3.20", "alpine:3.21"))
        lines = watcher.until("Apply complete: 1 done")
        assert any(
            "patch" in line and "pachyderm:Pipeline/vision/summary" in line for line in lines
        )
        watcher.until("watching")
        # Its own writes (the sandbox, the state) do not wake it: nothing more comes.
        time.sleep(1.0)
        assert watcher.lines.empty()
        assert watcher.stop() == 0
    finally:
        if watcher.process.poll() is None:
            watcher.process.kill()
