"""`reconciler serve` as a real process on a free port, for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.pachyderm.helpers import free_port
from tests.test_resilience import CLEAN_ENV


def wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def status(base: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base}/status", timeout=5).json()
    return data


def finished(base: str, number: int) -> bool:
    """Whether run `number` (or a later one) has ended."""
    last = status(base)["last_run"]
    return last is not None and last["number"] >= number


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serving(
    source: str, tmp_path: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[str]:
    """A serve of `source` in apply mode, its schedule an hour away; yields its URL once
    its first run has ended."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {**CLEAN_ENV, "RECONCILER_CACHE": str(tmp_path / "cache"), **(env or {})}
    command = [sys.executable, "-m", "reconciler", "serve", source, "--port", str(port)]
    command += ["--mode", "apply", "--interval", "1h", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ
    )
    try:
        wait_for("the server", lambda: _up(base) or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        wait_for("the first run", lambda: finished(base, 1))
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
