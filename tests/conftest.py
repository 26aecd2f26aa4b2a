from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.reconcile import Connector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test its own cache folder (git clones, parsed files, builds), outside the
    folders it plans: tests never share or leave caches."""
    monkeypatch.setenv("RECONCILER_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's platforms, sandboxes and servers are on 127.0.0.1: a proxy the machine
    names for the outside world must not route them (tests of proxies set their own)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def run_cli(*args: str, connector: Connector | None = None) -> int:
    """Run the command line in-process (with fake providers, if given); its exit code."""
    try:
        main(list(args), connector)
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("the command line did not exit")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    from tests.postgres import server

    with server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on a real PostgreSQL server (see tests/postgres.py)."""
    from tests.postgres import fresh_database

    return fresh_database(postgres_server)
