"""The ways a test signs in, one helper for each: ``approve`` answers the emulator's sign-in page
with no browser; ``sign_in_at`` is a browser at a sign-in address with no Jupyter server behind
it (terminal IPython, a kernel on its own); ``sign_in`` signs a Jupyter server in through a
browser logged in to it, with or without a kernel. (A hub user's server signs in through the
hub: ``tests/hub/conftest.py``'s ``hub_sign_in``.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

import requests

from ts_notebook.pending import PendingLogin

from .browser import Browser, new_browser
from .kernels import Kernel

# The callback address a sign-in started with no listener (``listen=False``) names.
REDIRECT = "http://localhost:31022"


class SignedIn(NamedTuple):
    """A browser that went through a sign-in, and the page it ended on."""

    browser: Browser
    page: requests.Response


def approve(pending: PendingLogin, decision: str = "allow", username: str = "analyst") -> dict[str, str]:
    """Press Allow (or Deny) on the emulator's page as ``username``; return the callback's query."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(pending.authorize_url).query).items()}
    base = pending.authorize_url.split("?", 1)[0]
    r = requests.post(
        base, data={**query, "username": username, "decision": decision}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in_at(url: str, username: str = "analyst", unreachable: Iterable[str] = ()) -> SignedIn:
    """A browser with no Jupyter server behind it opens ``url`` (a start address, or the
    provider's sign-in page) and, if that leads to the sign-in page, signs in as ``username``.

    Its calls block: async tests call it through ``asyncio.to_thread``. ``unreachable`` names
    hosts (``host:port``) it cannot reach, as a browser outside a container cannot.
    """
    browser = Browser("http://127.0.0.1/", "")
    browser.unreachable |= set(unreachable)
    page = browser.get(url)
    if "username" in page.text:
        page = browser.submit(page, "allow", username=username)
    return SignedIn(browser, page)


async def sign_in(
    server: Any,
    username: str = "analyst",
    scopes: str | None = None,
    decision: str = "allow",
    kernel: Kernel | None = None,
) -> SignedIn:
    """Sign the Jupyter ``server`` (the ``server`` fixture) in to TradeStation as ``username``, in
    a browser logged in to it, pressing ``decision`` on the provider's page.

    With a ``kernel``, as a notebook user does: run ``%ts_login`` there and follow its widget's
    link; once the page says signed in, return when the kernel has heard it too (the server
    pushes the change to the kernel's watcher, which takes a moment). Without one, follow the
    server's sign-in link, as a person with no kernel does. An allowed sign-in must end on a
    page that answers 200.

    Args:
        scopes: what to ask for instead of ``TS_SCOPES``.
    """
    if kernel is not None:
        magic = "%ts_login" + (f' --scopes "{scopes}"' if scopes else "")
        result = await kernel.run(f"%load_ext ts_notebook\n{magic}")
        assert result.error is None, result
        link = kernel.login_link()
    else:
        link = "ts_notebook/login" + (f"?scopes={quote(scopes)}" if scopes else "")
    browser = await new_browser(server)
    page = await asyncio.to_thread(browser.sign_in_to_tradestation, link, decision, username)
    if decision == "allow":
        assert page.status_code == 200, page.text
    if kernel is not None and "Signed in to TradeStation" in page.text:
        await kernel.wait_for_widget(r"^Signed in as ")
    return SignedIn(browser, page)
