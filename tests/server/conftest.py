"""A running Jupyter server with ts_notebook, its kernels, and browsers that sign in."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from ..parts import Browser, Kernel


@pytest.fixture
def server(jp_serverapp, http_server_client, jp_http_port, jp_base_url):
    """The running Jupyter server and its ts_notebook extension."""
    return SimpleNamespace(
        app=jp_serverapp,
        url=f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        token=jp_serverapp.identity_provider.token,
        ext=jp_serverapp.extension_manager.extension_points["ts_notebook"].app,
    )


@pytest.fixture
def server_log(caplog, server):
    """Everything the server (and the emulator beside it) logs, down to DEBUG; not the test's
    own HTTP client. (pytest-jupyter routes the server's log to pytest's capture, so its
    jp_logging_stream stays empty; the extension's own logger does not propagate.)"""
    caplog.set_level(logging.DEBUG)
    server.ext.log.addHandler(caplog.handler)
    yield ServerLog(caplog)
    server.ext.log.removeHandler(caplog.handler)


class ServerLog:
    def __init__(self, caplog) -> None:
        self.caplog = caplog
        self.format = logging.Formatter("%(levelname)s %(name)s %(message)s").format

    @property
    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.caplog.records if not r.name.startswith("urllib3"))


@pytest.fixture
def kernels():
    started: list[Kernel] = []
    yield started
    for k in started:
        k._pump_task.cancel()
        k.client.stop_channels()


async def new_kernel(server, kernels) -> Kernel:
    k = await Kernel.start(server.app)
    kernels.append(k)
    return k


async def new_browser(server) -> Browser:
    b = Browser(server.url, server.token)
    await asyncio.to_thread(b.sign_in_to_jupyter)
    return b


async def sign_in(server, kernel: Kernel, decision: str = "allow"):
    """Run %ts_login in ``kernel`` and click through the provider; return (browser, last page)."""
    result = await kernel.run("%load_ext ts_notebook\n%ts_login")
    assert result.error is None, result
    browser = await new_browser(server)
    page = await asyncio.to_thread(browser.sign_in_to_tradestation, kernel.login_link(), decision)
    return browser, page


