"""A real JupyterHub for the hub tests: configurable-http-proxy from npm, DummyAuthenticator,
the local-process spawner, everything on 127.0.0.1."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from ts_notebook.emulator import Emulator
from ts_notebook.launch import free_port

from ..parts.browser import Browser
from ..parts.kernels import environ_without_settings, run_in_kernel

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = secrets.token_urlsafe(12)
ACCOUNTS = 'import ts_notebook as ts\nprint(ts.session.get("brokerage/accounts").json()["Accounts"][0]["AccountID"])'
STATUS = "import ts_notebook as ts\nprint(ts.status())"


_GIVEN: set[int] = set()


def unused_port() -> int:
    """A free port not yet given to anything in this run: two ``free_port()`` calls in a row may
    name the same one, and the hub, its proxy and the service would then fight over it."""
    while (port := free_port()) in _GIVEN:
        pass
    _GIVEN.add(port)
    return port


def wait_for_answer(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=5).status_code == 200:
                return
        assert proc.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{what} did not start:\n{log.read_text()[-3000:]}")


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Hub:
    """The hub process and the calls a test makes to it (as a service with admin scopes)."""

    def __init__(self, url: str, api_url: str, emulator: Emulator, proc: subprocess.Popen, log: Path, token: str):
        self.url, self.api_url, self.emulator, self.proc, self.log = url, api_url, emulator, proc, log
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"token {token}"

    def browser(self, user: str) -> Browser:
        """A browser logged in to the hub as ``user``."""
        b = Browser(self.url, "")
        b.http.get(f"{self.url}hub/login", timeout=30)
        r = b.http.post(
            f"{self.url}hub/login",
            data={"username": user, "password": PASSWORD, "_xsrf": b.http.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302, r.text[:300]
        return b

    def _server_api(self, user: str, server: str) -> str:
        return f"{self.url}hub/api/users/{user}/" + (f"servers/{server}" if server else "server")

    def _info(self, user: str, server: str) -> dict[str, Any]:
        return self.api.get(f"{self.url}hub/api/users/{user}", timeout=30).json()["servers"].get(server, {})

    def start(self, user: str, server: str = "") -> str:
        """Start a server through the hub API; return its URL prefix once it is ready."""
        r = self.api.post(self._server_api(user, server), timeout=60)
        assert r.status_code in (201, 202) or "is already running" in r.text, r.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._info(user, server).get("ready"):
                return f"{self.url}user/{user}/{server + '/' if server else ''}"
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server {server!r} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, user: str, server: str = "") -> None:
        """Stop a server through the hub API, as the idle culler does; return once it is gone."""
        r = self.api.delete(self._server_api(user, server), timeout=60)
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self._info(user, server):
                return
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server {server!r} did not stop")

    def remake(self, user: str) -> None:
        """Delete ``user`` (their servers stopped first) and make a new user of the same name,
        as a hub whose authenticator reuses names does."""
        r = self.api.delete(f"{self.url}hub/api/users/{user}", timeout=60)
        assert r.status_code == 204, r.text
        r = self.api.post(f"{self.url}hub/api/users/{user}", timeout=60)
        assert r.status_code == 201, r.text

    def run(self, server_url: str, code: str) -> str:
        """Run ``code`` in a new kernel of that server, over its websocket; return stdout."""
        return run_in_kernel(self.api, server_url, code)


def hub_sign_in(hub: Hub, browser: Browser, server_url: str, username: str = "analyst") -> requests.Response:
    """Sign in to TradeStation as ``username`` from ``server_url`` in ``browser``, through the
    hub's one callback URL."""
    page = browser.get(f"{server_url}ts_notebook/login")
    assert "username" in page.text, page.text[:500]
    assert (
        "redirect_uri=" + requests.utils.quote(f"{hub.url}hub/user-redirect/ts_notebook/callback", safe="") in page.url
    )
    return browser.submit(page, "allow", username=username)


@contextlib.contextmanager
def running_hub(
    tmp: Path,
    emulator: Emulator,
    spawner_env: Mapping[str, str],
    extra_config: str = "",
    ports: tuple[int, int] | None = None,
    hub_env: Mapping[str, str] | None = None,
    address: str = "127.0.0.1",
    inside: Callable[..., list[str]] | None = None,
) -> Iterator[Hub]:
    """A JupyterHub with users alice, bob, carol, dave, erin (an admin), frank, grace and heidi,
    and a service ``tester`` whose token (``Hub.api``) may start, stop and reach every server.

    Args:
        spawner_env: the users' servers' environment (``c.Spawner.environment``).
        extra_config: more lines for ``jupyterhub_config.py``.
        ports: the hub's public port and its internal (API) port, when chosen beforehand.
        hub_env: more variables for the hub's own environment.
        address: where the hub's public side (the proxy) listens.
        inside: what runs the hub's command elsewhere (a network namespace's ``Pod.command``).
    """
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run `npm ci` in the project folder (.ci/run does)")
    port, hub_port = ports or (unused_port(), unused_port())
    proxy_api, tester_token = unused_port(), secrets.token_hex(24)
    emulator.add_redirect_uri(f"http://{address}:{port}/hub/user-redirect/ts_notebook/callback")
    (tmp / "jupyterhub_config.py").write_text(f"""
import sys
from ts_notebook.hub import user_redirect_hook
c.JupyterHub.ip = {address!r}
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allowed_users = {{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}}
c.Authenticator.admin_users = {{"erin"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp / "home" / "{username}")!r}
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {dict(spawner_env)!r}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.allow_named_servers = True
c.JupyterHub.user_redirect_hook = user_redirect_hook
c.JupyterHub.db_url = "sqlite:///{tmp / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
c.JupyterHub.services = [{{"name": "tester", "api_token": {tester_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                             "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"]}}]
{extra_config}
""")
    log = tmp / "hub.log"
    env = environ_without_settings()
    env.update(hub_env or {}, PYTHONPATH=str(ROOT))
    with open(log, "w") as out:
        command = [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"]
        proc = subprocess.Popen(
            inside(*command) if inside else command,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://{address}:{port}/"
    try:
        # The proxy answers 404 before the hub is up: wait for the hub's own 200.
        wait_for_answer(f"{url}hub/api/", proc, log, "JupyterHub")
        yield Hub(url, f"http://{address}:{hub_port}/hub/api", emulator, proc, log, tester_token)
    finally:
        stop_process(proc)
