"""A throwaway PostgreSQL server for the tests of the shared state backend.

RECONCILER_TEST_POSTGRES (a superuser URL) names a server to use; otherwise one is
started from Debian's `postgresql` package binaries in a temporary folder, on a free
loopback port, and stopped at the end. Without either, the tests that need it skip
saying why; in CI (CI=true) that is a failure instead: CI installs the package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

HOW = "install Debian's postgresql package (apt-get install postgresql) to run them"


def _binaries() -> Path | None:
    for found in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True):
        return found.parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """A superuser URL of a running server, or a skip (a failure in CI)."""
    given = os.environ.get("RECONCILER_TEST_POSTGRES")
    if given:
        yield given
        return
    binaries = _binaries()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but no PostgreSQL server could be started: {HOW}")
        pytest.skip(f"no PostgreSQL server for the shared-state tests: {HOW}")
    # The server refuses to run as root: run it as Debian's postgres user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    data = folder / "data"
    if as_user:
        shutil.chown(folder, "postgres")
    port = _free_port()
    run = [*as_user]
    try:
        subprocess.run(
            [*run, str(binaries / "initdb"), "-D", str(data), "-U", "reconciler", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run,
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-w",
                "-o",
                f"-p {port} -k {folder} -h 127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        output = getattr(exc, "stderr", b"") or b""
        message = f"PostgreSQL did not start: {exc} {output.decode(errors='replace')}"
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"postgresql://reconciler@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new empty database on the server; its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}".encode())
    return admin_url.rsplit("/", 1)[0] + "/" + name
