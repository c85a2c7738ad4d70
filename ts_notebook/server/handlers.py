"""HTTP handlers under ``{base_url}ts_notebook/``: two browser pages and the kernels' API.

Browser pages (``login``, ``callback``) need the user's Jupyter login. The API accepts the
runtime key that kernels read from the runtime file, or the server owner's Jupyter login.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import os
import secrets
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from ..config import BROKER_KEY_HEADER
from ..errors import ConfigError, NotSignedIn, OAuthError
from ..oauth import PENDING_TTL
from .broker import LoginRejected, TokenBroker

if TYPE_CHECKING:
    from .app import TSNotebookApp

# Long-poll answer time when nothing changes; kernels wait a few seconds longer.
LONGPOLL_SECONDS = 25.0
LONGPOLL_MAX = 60.0

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TradeStation sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.3em}}.ok{{color:#1a7f37}}.bad{{color:#b42318}}</style></head>
<body><h1 class="{cls}" id="ts-result">{title}</h1><p id="ts-detail">{detail}</p></body></html>
"""


def page(title: str, detail: str, ok: bool) -> str:
    """A small self-contained HTML page; both strings are escaped here."""
    return PAGE.format(cls="ok" if ok else "bad", title=html.escape(title), detail=html.escape(detail))


class _Base(ExtensionHandlerMixin, JupyterHandler):
    @property
    def app(self) -> "TSNotebookApp":
        return self.extensionapp  # type: ignore[return-value]

    @property
    def broker(self) -> TokenBroker:
        return self.app.broker

    @property
    def cookie_name(self) -> str:
        # Cookies ignore ports, so the name carries this server's port and base_url.
        tag = hashlib.sha256(self.base_url.encode()).hexdigest()[:8]
        return f"ts_notebook_login_{self.serverapp.port}_{tag}"

    def send_page(self, status: int, title: str, detail: str, ok: bool = False) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page(title, detail, ok))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Never a traceback page: a short message, whatever went wrong.
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(page("TradeStation sign-in", f"Something went wrong (HTTP {status_code}). "
                         "Close this tab and run %ts_login again.", ok=False))


class LoginHandler(_Base):
    """GET login: start a sign-in and send the browser to the provider."""

    @web.authenticated
    async def get(self) -> None:
        browser_key = self.get_cookie(self.cookie_name) or ""
        if len(browser_key) < 32:  # reuse this browser's key so two open logins both work
            browser_key = secrets.token_urlsafe(32)
        try:
            pending = await self.broker.begin_login(self.redirect_uri(), browser_key)
        except (ConfigError, OAuthError) as exc:
            self.send_page(400 if isinstance(exc, ConfigError) else 502, "Cannot start the sign-in", str(exc))
            return
        self.set_cookie(
            self.cookie_name,
            browser_key,
            path=url_path_join(self.base_url, "ts_notebook/"),
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            max_age=int(PENDING_TTL),
        )
        self.redirect(pending.authorize_url)

    def redirect_uri(self) -> str:
        """The configured redirect URI, else this server's own callback on the origin in use."""
        configured = self.broker.settings.redirect_uri
        if configured:
            return configured
        path = url_path_join(self.base_url, "ts_notebook/callback")
        return f"{self.request.protocol}://{self.request.host}{path}"


class CallbackHandler(_Base):
    """GET callback: the provider's redirect back, with ``code`` and ``state`` (or an error)."""

    @web.authenticated
    async def get(self) -> None:
        try:
            pending = self.broker.take_pending(self.get_query_argument("state", ""),
                                               self.get_cookie(self.cookie_name))
        except LoginRejected as exc:
            self.send_page(400, "Sign-in not accepted", str(exc))
            return
        self._forget_cookie_if_done()
        if self.check_error():
            return
        code = self.get_query_argument("code", "")
        if not code:
            self.broker.fail_login("The sign-in service sent no code. Run %ts_login again.")
            self.send_page(400, "Sign-in not completed", "The sign-in service sent no code. Run %ts_login again.")
            return
        try:
            tokens = await self.broker.complete_login(pending, code)
        except OAuthError as exc:
            self.send_page(400 if exc.permanent else 502, "Sign-in not completed", str(exc))
            return
        self.send_page(200, f"Signed in to TradeStation as {tokens.display_name}.",
                       "You can close this tab and go back to your notebook.", ok=True)

    def check_error(self) -> bool:
        """Handle ``error=access_denied`` and the like; True if the callback carried an error."""
        error = self.get_query_argument("error", "")
        if not error:
            return False
        description = self.get_query_argument("error_description", "")
        message = str(OAuthError(error, description, "Run %ts_login to try again"))
        self.broker.fail_login(message)
        self.send_page(400, "Sign-in not completed", message)
        return True

    def _forget_cookie_if_done(self) -> None:
        key = self.get_cookie(self.cookie_name) or ""
        if not self.broker.has_pending_for(key):
            self.clear_cookie(self.cookie_name, path=url_path_join(self.base_url, "ts_notebook/"))


class _API(ExtensionHandlerMixin, APIHandler):
    """Base of the kernel API: runtime key or the server owner, JSON in and out, no caching."""

    @property
    def broker(self) -> TokenBroker:
        return self.extensionapp.broker  # type: ignore[attr-defined]

    @property
    def key_ok(self) -> bool:
        given = self.request.headers.get(BROKER_KEY_HEADER, "")
        return bool(given) and secrets.compare_digest(given, self.extensionapp.key)  # type: ignore[attr-defined]

    def check_xsrf_cookie(self) -> None:
        # Only a valid runtime key skips XSRF; a browser session must carry the XSRF token.
        if self.key_ok:
            return None
        return super().check_xsrf_cookie()

    def require_access(self) -> None:
        """Allow the runtime key, or the Jupyter user who owns this server."""
        if self.key_ok:
            return
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "Send the runtime key or sign in to Jupyter.")
        owner = os.environ.get("JUPYTERHUB_USER")
        if owner and getattr(user, "username", None) != owner:
            raise web.HTTPError(403, "Only the owner of this server may use its TradeStation sign-in.")

    def reply(self, data: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class TokenHandler(_API):
    """GET api/token[?since=V]: the current state with the access token; long-polls on since."""

    _wake: asyncio.Future[None] | None = None

    @allow_unauthenticated
    async def get(self) -> None:
        self.require_access()
        since = self.get_query_argument("since", "")
        if since:
            try:
                since_v = int(since)
                timeout = min(float(self.get_query_argument("timeout", str(LONGPOLL_SECONDS))), LONGPOLL_MAX)
            except ValueError:
                self.reply({"message": "since must be an integer version and timeout a number of seconds."}, 400)
                return
            if since_v == self.broker.version:
                self._wake = self.broker.watch()
                await asyncio.wait([self._wake], timeout=max(timeout, 0.0))
                self._wake.cancel()
                if self.request.connection.stream.closed():  # type: ignore[union-attr]
                    return
        self.reply(self.broker.snapshot(include_token=True))

    def on_connection_close(self) -> None:
        if self._wake is not None:
            self._wake.cancel()  # the kernel went away: stop waiting for it


class RefreshHandler(_API):
    """POST api/refresh ``{"stale": token}``: renew now unless someone already has."""

    @allow_unauthenticated
    async def post(self) -> None:
        self.require_access()
        try:
            stale = json.loads(self.request.body or b"{}").get("stale")
        except (ValueError, AttributeError):
            self.reply({"message": 'Send a JSON object such as {"stale": "<token>"}.'}, 400)
            return
        try:
            await self.broker.refresh(stale if isinstance(stale, str) else None)
        except NotSignedIn:
            pass  # the snapshot says signed out, with the reason
        except OAuthError as exc:
            if not exc.permanent:
                self.reply({"message": str(exc)}, 502)
                return
        self.reply(self.broker.snapshot(include_token=True))


class LogoutHandler(_API):
    """POST api/logout: revoke and forget, for every kernel of this server."""

    @allow_unauthenticated
    async def post(self) -> None:
        self.require_access()
        await self.broker.logout()
        self.reply(self.broker.snapshot(include_token=False))


class StatusHandler(_API):
    """GET api/status: the state without the access token."""

    @allow_unauthenticated
    async def get(self) -> None:
        self.require_access()
        self.reply(self.broker.snapshot(include_token=False))
