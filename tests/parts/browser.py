"""Browsers for the tests: a scripted one (cookies, redirects followed one by one, forms
filled and sent), and the system browser as ``webbrowser`` finds it.

The scripted browser's calls block, so async tests (which share their event loop with the
Jupyter server) call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name") and a.get("type") != "submit":
            self.fields[a["name"]] = a.get("value", "")


class Browser:
    """A scripted browser: cookies, redirects followed one by one, forms filled and sent.

    Its calls block, so async tests call them through ``asyncio.to_thread``.
    """

    def __init__(self, server_url: str, token: str) -> None:
        self.server_url = server_url
        self.http = requests.Session()
        self.http.trust_env = False
        self.token = token
        self.visited: list[str] = []
        # Hosts (host:port) this browser cannot reach, like a relay inside a container.
        self.unreachable: set[str] = set()
        self.ended_on: str | None = None

    def sign_in_to_jupyter(self) -> None:
        """Log in to Jupyter with its token, as the login page does, to get its cookie."""
        login = urljoin(self.server_url, "login")
        self.http.get(login, timeout=10)
        xsrf = self.http.cookies.get("_xsrf", "")
        r = self.http.post(login, data={"password": self.token, "_xsrf": xsrf}, timeout=10, allow_redirects=False)
        assert r.status_code == 302, r.text

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET and follow redirects, remembering each URL visited."""
        return self._follow(self.http.get(urljoin(self.server_url, url), allow_redirects=False, timeout=30, **kwargs))

    def _follow(self, r: requests.Response) -> requests.Response:
        self.visited.append(r.url)
        for _ in range(10):
            if r.status_code not in (301, 302, 303, 307):
                return r
            target = urljoin(r.url, r.headers["Location"])
            if urlsplit(target).netloc in self.unreachable:
                self.ended_on = target  # where a real browser would show "cannot connect"
                return r
            r = self.http.get(target, allow_redirects=False, timeout=30)
            self.visited.append(r.url)
        raise AssertionError("too many redirects")

    def submit_login(self, page: requests.Response) -> requests.Response:
        """On Jupyter's login page, enter the token and press Log in (its ?next= is kept)."""
        r = self.http.post(
            page.url,
            data={"password": self.token, "_xsrf": self.http.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=30,
        )
        return self._follow(r)

    def submit(self, page: requests.Response, button: str, **values: str) -> requests.Response:
        """Fill the page's form and press the submit button named ``button`` (its value)."""
        form = _Form()
        form.feed(page.text)
        data = {**form.fields, **values, "decision": button}
        r = self.http.post(urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=30)
        return self._follow(r)

    def sign_in_to_tradestation(
        self, login_link: str, decision: str = "allow", username: str = "analyst"
    ) -> requests.Response:
        """Click the widget's link, then Allow (or Deny) on the sign-in page; return the last page."""
        page = self.get(login_link)
        assert "username" in page.text, page.text[:500]
        return self.submit(page, decision, username=username)


async def new_browser(server: Any) -> Browser:
    """A browser logged in to the Jupyter ``server`` (the ``server`` fixture) with its token."""
    b = Browser(server.url, server.token)
    await asyncio.to_thread(b.sign_in_to_jupyter)
    return b


def note_browser(path: Path, opened: Path) -> Path:
    """A system browser as ``webbrowser`` finds it (name it in ``BROWSER``): a program at
    ``path`` that writes down in ``opened`` the address it is asked to open."""
    path.write_text(f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    path.chmod(0o700)
    return path


def opened_address(noted: Path) -> str:
    """The address a browser named in ``BROWSER`` (``note_browser``) was sent on to: through
    the private page ts_notebook opens (a ``file://`` URL whose page redirects), or as given."""
    url = noted.read_text().strip()
    if not url.startswith("file://"):
        return url
    page = Path(urlsplit(url).path).read_text()
    return html.unescape(re.search(r'content="0;url=([^"]*)"', page).group(1))
