"""Shared fixtures: the emulator as a real HTTP server, and a Jupyter server with ts_notebook."""

from __future__ import annotations

import os
import secrets

import pytest

from ts_notebook.config import SECRET_ENV, TABLE
from ts_notebook.emulator import Emulator
from ts_notebook.protocol import ENV_VAR

pytest_plugins = ["pytest_jupyter.jupyter_server"]

CLIENT_ID = "test-client"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No TS_* setting or broker variable leaks in from the machine or between tests."""
    for name in {s.env for s in TABLE} | set(SECRET_ENV) | {ENV_VAR}:
        monkeypatch.delenv(name, raising=False)
    # No test reaches this machine's own credential store: the keyring package's failing
    # backend (not secure) unless a test installs its own, and no kept sign-in by default.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    # setenv then delenv: monkeypatch restores the variable the extension may set.
    monkeypatch.setenv(ENV_VAR, "")
    monkeypatch.delenv(ENV_VAR)
    # Bars kept by ts.bars and ts.download go to a folder of this test's own.
    monkeypatch.setenv("TS_CACHE_DIR", str(tmp_path_factory.mktemp("bar-cache")))


def emulator_env(emulator: Emulator, client_secret: str, **more: str) -> dict[str, str]:
    """This process's environment for a child process (a server, a terminal), its TS_* settings
    replaced by the emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_") or k == "TS_CACHE_DIR"}
    env.update(
        TS_CLIENT_ID=CLIENT_ID,
        TS_CLIENT_SECRET=client_secret,
        TS_SIGNIN_URL=emulator.url,
        TS_API_URL=f"{emulator.url}/v3",
        TS_SIM_API_URL=f"{emulator.url}/sim/v3",
        **more,
    )
    return env


@pytest.fixture
def client_secret() -> str:
    """A fresh secret for each test: never a committed one."""
    return secrets.token_urlsafe(24)


@pytest.fixture
def emulator(client_secret: str):
    """The TradeStation emulator on 127.0.0.1, with a generated client secret."""
    with Emulator(client_id=CLIENT_ID, client_secret=client_secret) as em:
        yield em


@pytest.fixture
def other_host():
    """A second emulator on another port: an origin that must never see the bearer token."""
    with Emulator(client_id="someone-else", client_secret=secrets.token_urlsafe(16)) as em:
        yield em


@pytest.fixture
def ts_config(emulator: Emulator, client_secret: str) -> dict[str, str]:
    """c.TSNotebook settings pointing at the emulator."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": client_secret,
        "signin_url": emulator.url,
        "api_url": f"{emulator.url}/v3",
        "sim_api_url": f"{emulator.url}/sim/v3",
    }


@pytest.fixture
def jp_server_config(ts_config: dict[str, str]):
    """Enable the extension through config (jp_environ hides the shipped JSON)."""
    return {
        "ServerApp": {"jpserver_extensions": {"ts_notebook": True}},
        "TSNotebook": ts_config,
    }


@pytest.fixture(autouse=True)
def _kernels_use_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kernels started by the test server must import the ts_notebook under test.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


# Tests that pass only when the machine answers within about a second: a token that lives 2 s and
# must not be renewed before it is revoked, 800 threads hammering for 11 s, a terminal printing
# 10 lines a second. .ci/run runs them on its other Pythons once nothing else runs, not alongside
# the whole suite (they failed there when two cores ran three test runs). Named here, not in the
# test files, so that moving a file keeps its mark.
LOAD_SENSITIVE = {
    "test_a_refresh_token_revoked_at_the_provider_tells_every_kernel_once",
    "test_eight_hundred_threads_in_eight_kernels_across_an_expiry_make_one_refresh",
    "test_the_terminal_prints_a_line_per_update_until_seconds",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if getattr(item, "originalname", item.name) in LOAD_SENSITIVE:
            item.add_marker(pytest.mark.load_sensitive)
