"""Keycloak tokens (cached, refreshed on expiry and on a 401), bad credentials, a
deployment in Error, and one that never becomes Running."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from reconciler.errors import RetryableError
from reconciler.manifests import load
from reconciler.providers.http import HttpClient, Transport, asgi_transport
from reconciler.providers.insights.auth import KeycloakAuth
from reconciler.providers.insights.connection import connect
from reconciler.providers.insights.provider import InsightsProvider
from reconciler.providers.insights.target import InsightsTarget
from reconciler.sandbox import SandboxOptions, create_app
from reconciler.sandbox.insights import InsightsOptions
from tests.insights.world import FAST, World, worlds
from tests.pachyderm.helpers import connecting, observe_failures

CLIENTS = {"reconciler": "s3cret"}
AUTH = SandboxOptions(insights=InsightsOptions(deploy_delay=0.05, clients=CLIENTS))


@pytest.fixture(params=[False, True], ids=["in-process", "uvicorn"])
def guarded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A world whose sandbox wants Keycloak tokens; credentials come from the environment."""
    for world in worlds(tmp_path, bool(request.param), AUTH):
        world.config(
            ", auth: {clientId: '${env:TEST_CLIENT_ID}', clientSecret: '${env:TEST_SECRET}'}"
        )
        yield world


def test_credentials_from_the_environment_get_a_token(
    guarded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CLIENT_ID", "reconciler")
    monkeypatch.setenv("TEST_SECRET", "s3cret")
    assert guarded.apply() == 0
    assert guarded.stats()["refused"] == {}
    calls = guarded.sandbox.recorder.calls
    tokens = [c for c in calls if c.path.endswith("openid-connect/token")]
    assert len(tokens) == 1, "one token serves every call of the run"
    assert tokens[0].path == "/auth/realms/insights/protocol/openid-connect/token"
    api = [c for c in calls if c.path.startswith("/packagemanager/")]
    assert api and all(c.headers["authorization"].startswith("Bearer ") for c in api)


def test_bad_credentials_fail_clearly_before_any_change(
    guarded: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_CLIENT_ID", "reconciler")
    monkeypatch.setenv("TEST_SECRET", "wrong")
    assert guarded.apply() == 1
    err = capsys.readouterr().err
    assert "authentication failed" in err
    assert "Invalid client or Invalid client credentials" in err
    assert "wrong" not in err
    assert guarded.mutating() == []
    assert guarded.stats()["mutating"] == 0


def test_a_missing_secret_variable_is_an_input_error(
    guarded: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_CLIENT_ID", "reconciler")
    monkeypatch.delenv("TEST_SECRET", raising=False)
    assert guarded.run("plan") == 3
    assert "TEST_SECRET" in capsys.readouterr().err
    assert guarded.sandbox.recorder.calls == []


def test_a_revoked_token_is_refreshed_once_on_401(tmp_path: Path) -> None:
    app = create_app(tmp_path / "sandbox.db", AUTH)
    folder = tmp_path / "m"
    folder.mkdir()
    manifests = load(folder)
    config = InsightsTarget.model_validate(
        {
            "provider": "insights",
            "url": "embedded",
            "auth": {"clientId": "reconciler", "clientSecret": "s3cret"},
        }
    )

    async def scenario() -> int:
        transport = asgi_transport(app)
        provider = connect(
            connecting("insights", config, manifests, transport=transport, base_url="http://sb")
        )
        try:
            await provider.observe()
            async with httpx.AsyncClient(transport=transport, base_url="http://sb") as client:
                await client.post("/_sandbox/expire-tokens")
            await provider.observe()
            auth = provider.client.http._auth
            assert isinstance(auth, KeycloakAuth)
            return auth.fetched
        finally:
            await provider.aclose()

    assert asyncio.run(scenario()) == 2


def test_a_token_is_reused_until_shortly_before_it_expires(tmp_path: Path) -> None:
    now = [1000.0]
    app = create_app(
        tmp_path / "sandbox.db",
        SandboxOptions(insights=InsightsOptions(clients=CLIENTS, token_ttl=300)),
        clock=lambda: now[0],
    )

    http = HttpClient("http://sb", platform="Keycloak", transport=asgi_transport(app))
    auth = KeycloakAuth(
        http,
        ("/auth/realms/insights/protocol/openid-connect/token",),
        lambda: "reconciler",
        lambda: "s3cret",
        clock=lambda: now[0],
    )
    # 280 s in: past 300 - 30 s of margin
    assert fetches(auth, now, (0, 200, 60, 20)) == [1, 1, 1, 2]


def fetches(auth: KeycloakAuth, now: list[float], steps: tuple[float, ...]) -> list[int]:
    """How many tokens `auth` has fetched after each step of the clock `now`."""

    async def scenario() -> list[int]:
        seen = []
        for step in steps:
            now[0] += step
            await auth.token()
            seen.append(auth.fetched)
        await auth.aclose()
        return seen

    return asyncio.run(scenario())


@pytest.mark.parametrize("lifetime", ["Infinity", "NaN", "-5", "1e12", '"300"'])
def test_an_odd_token_lifetime_keeps_a_token_a_minute(lifetime: str) -> None:
    """`expires_in` is the identity provider's answer: Infinity (Python's JSON reads it)
    must not keep a token for ever, nor a negative one fetch a token for every call."""
    now = [1000.0]

    def keycloak(request: httpx.Request) -> httpx.Response:
        body = '{"access_token": "t", "expires_in": ' + lifetime + "}"
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    http = HttpClient("http://kc", platform="Keycloak", transport=httpx.MockTransport(keycloak))
    auth = KeycloakAuth(http, ("/token",), lambda: "c", lambda: "s", clock=lambda: now[0])
    # A minute less its margin (6 s): fetched again by then.
    assert fetches(auth, now, (0, 1, 55, 3600)) == [1, 1, 2, 3]


def test_newer_keycloak_without_the_auth_prefix_is_found(tmp_path: Path) -> None:
    app = create_app(tmp_path / "sandbox.db", AUTH)

    async def scenario() -> str:
        http = HttpClient("http://sb", platform="Keycloak", transport=asgi_transport(app))
        auth = KeycloakAuth(
            http,
            (
                "/auth/realms/other/protocol/openid-connect/token",
                "/realms/insights/protocol/openid-connect/token",
            ),
            lambda: "reconciler",
            lambda: "s3cret",
        )
        try:
            return await auth.token()
        finally:
            await auth.aclose()

    assert asyncio.run(scenario())


def test_a_deployment_in_error_fails_the_action_with_the_platform_message(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.edit(
        "pipelines/static.yaml", "spec: file://src/static.json", "spec: file://src/gone.json"
    )
    assert world.apply() == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert (
        "is in state Error: pipeline static: spec file src/gone.json is not in the package" in text
    )


def test_a_deployment_that_never_runs_times_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = SandboxOptions(insights=InsightsOptions(deploy_delay=3600))
    for world in worlds(tmp_path, False, slow):
        world.config(", deployTimeout: 0.3")
        assert world.apply() == 1
        captured = capsys.readouterr()
        assert "was not Running within 0.3s (state Initializing)" in captured.out + captured.err


def test_fast_options_are_what_the_world_uses() -> None:
    assert FAST.deploy_delay < 1


@pytest.mark.parametrize("over_http", [False, True], ids=["in-process", "uvicorn"])
def test_injected_faults_on_the_package_manager_are_retryable(
    tmp_path: Path, over_http: bool
) -> None:
    app = create_app(tmp_path / "sandbox.db", SandboxOptions(fail_rate=1.0, seed=5))
    folder = tmp_path / "m"
    folder.mkdir()
    manifests = load(folder)

    def provider(url: str, transport: Transport | None) -> InsightsProvider:
        config = InsightsTarget(provider="insights", url=url, timeout=5, retries=0)
        return connect(connecting("insights", config, manifests, transport=transport, base_url=url))

    seen = observe_failures(app, provider, over_http=over_http)
    assert len(seen) == 12
    assert all(isinstance(e, RetryableError) for e in seen), seen
    messages = [str(e) for e in seen]
    assert any("injected: unavailable" in m for m in messages), messages
    assert any(getattr(e, "retry_after", None) == 0 for e in seen), "429 keeps Retry-After"


@pytest.mark.parametrize("shape", ["detail", "errorMessage", "error", "nested"])
def test_a_refusal_in_any_error_shape_reaches_the_user_with_its_message(
    tmp_path: Path, shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = SandboxOptions(insights=replace(FAST, error_shape=shape))
    for world in worlds(tmp_path, True, options):
        # The package names a view file it does not hold: the Package Manager refuses it.
        world.edit("manifest.yaml", "file: views/HLOC.yaml", "file: views/gone.yaml")
        capsys.readouterr()
        assert world.apply() == 1
        err = capsys.readouterr()
        said = err.out + err.err
        assert "views/gone.yaml is not in the package" in said
