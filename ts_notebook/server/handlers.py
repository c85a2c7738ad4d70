"""HTTP handlers under ``{base_url}ts_notebook/``: two browser pages and the kernels' API.

Browser pages (``login``, ``callback``) need the user's Jupyter login. The API accepts the
runtime key that kernels read from the runtime file, or the server owner's Jupyter login.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .. import hub
from ..errors import ConfigError, NotSignedIn, OAuthError
from ..longpoll import LONGPOLL, LongPollHandler, poll_arguments
from ..loopback import LOOPBACK_NAMES, relay_port
from ..oauth import callback_params
from ..pages import result_page
from ..pending import PENDING_TTL, LoginRejected
from ..protocol import CALLBACK, KEY_HEADER
from ..redirects import choose_redirect_uri
from ..tokens import same_secret
from .broker import TokenBroker

# A Host header as a browser sends it: a name or address and an optional port, nothing else.
HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
# Sec-Fetch-Site values of a navigation this server's own pages (or the person) started. A hub
# that serves users on subdomains (subdomain_host) sends its OAuth redirects from a sibling
# origin, which browsers call same-site.
OWN_NAVIGATION = frozenset({"same-origin", "none"})
HUB_NAVIGATION = OWN_NAVIGATION | {"same-site"}


def is_owner(user: Any) -> bool:
    """On JupyterHub only the server's owner (not an admin, not a user it is shared with) may
    use its TradeStation sign-in; elsewhere any Jupyter user of the server may."""
    here = hub.HubServer.here()
    return bool(user) and (here is None or getattr(user, "username", None) == here.user)


# A callback answers with the result when the provider exchanges the code within this many
# seconds; otherwise with a page that says the exchange is under way and looks again, each
# look waiting up to LOOK_WAIT.
QUICK_ANSWER, LOOK_WAIT = 3.0, 15.0


class RefusedPage(web.HTTPError):
    """A request refused with a result page: its status, title and what to do. Every page
    but success is one of these, rendered by ``write_error``."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(status, detail)
        self.title, self.detail = title, detail


class _Base(JupyterHandler):
    """The browser pages: given the broker by the app."""

    def initialize(self, broker: TokenBroker, key: str) -> None:
        self.broker = broker

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user and not is_owner(self.current_user):
            raise RefusedPage(
                403,
                "Not your sign-in",
                "Only the owner of this Jupyter server can sign it in to "
                "TradeStation. Open your own server and run %ts_login there.",
            )

    @property
    def cookie_name(self) -> str:
        # Cookies ignore ports, so the name carries this server's port and base_url.
        tag = hashlib.sha256(self.base_url.encode()).hexdigest()[:8]
        return f"ts_notebook_login_{self.serverapp.port}_{tag}"

    @property
    def cookie_path(self) -> str:
        return url_path_join(self.base_url, "ts_notebook/")

    def set_private_cookie(self, name: str, value: str) -> None:
        """A short-lived cookie only this extension's pages receive, never readable by scripts."""
        self.set_cookie(
            name,
            value,
            path=self.cookie_path,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
            max_age=int(PENDING_TTL),
        )

    def browser_host(self) -> str:
        """The Host header, when it is a plain ``host[:port]``: anything else is refused, never
        copied into a URL.

        Raises:
            RefusedPage: 400 for a malformed Host header.
        """
        return self._host().group(0)

    def _host(self) -> re.Match[str]:
        match = HOST.fullmatch(self.request.host or "")
        if match is None:
            raise RefusedPage(
                400,
                "TradeStation sign-in",
                "The request's Host header is malformed. Open Jupyter by its usual address.",
            )
        return match

    def own_callback(self) -> str:
        """This server's callback on the origin the browser used."""
        return f"{self.request.protocol}://{self.browser_host()}{url_path_join(self.base_url, CALLBACK)}"

    def browser_on_this_machine(self) -> bool:
        """True when the browser reached this server as localhost, 127.0.0.1 or [::1]."""
        return self._host().group("host").strip("[]") in LOOPBACK_NAMES

    def send_page(self, title: str, detail: str) -> None:
        """The success page."""
        self._page(200, title, detail, ok=True)

    def _page(self, status: int, title: str, detail: str, ok: bool, look_again: str | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(result_page(title, detail, ok, look_again))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        # tornado's default logs the whole URI, and a callback's query carries the code.
        if isinstance(value, RefusedPage):
            self.log.info("ts_notebook: %s %s refused (%d)", self.request.method, self.request.path, value.status_code)
            return
        self.log.warning(
            "ts_notebook: %s %s failed: %s", self.request.method, self.request.path, typ.__name__ if typ else "error"
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every page but success: a refusal's own, else a short message, never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RefusedPage):
            self._page(status_code, exc.title, exc.detail, ok=False)
            return
        detail = (
            exc.log_message
            if isinstance(exc, web.HTTPError) and exc.log_message
            else (f"Something went wrong (HTTP {status_code}). Close this tab and run %ts_login again.")
        )
        self._page(status_code, "TradeStation sign-in", detail, ok=False)


class LoginHandler(_Base):
    """GET login: start a sign-in and send the browser to the provider."""

    @web.authenticated
    async def get(self) -> None:
        allowed = HUB_NAVIGATION if hub.HubServer.here() else OWN_NAVIGATION
        if self.request.headers.get("Sec-Fetch-Site", "none") not in allowed:
            # Another site's page must not start sign-ins here: each one holds the relay's
            # port and a place in the pending table, and could push a real one out.
            raise RefusedPage(
                403,
                "Sign-in not started",
                "Another website tried to start a TradeStation sign-in "
                "here. To sign in, run %ts_login in your notebook and click its button.",
            )
        browser_key = self.get_cookie(self.cookie_name) or ""
        if len(browser_key) < 32:  # reuse this browser's key so two open logins both work
            browser_key = secrets.token_urlsafe(32)
        redirect_uri = self.plan_redirect()
        # Where the relay sends the browser on to (only a relayed login needs it).
        return_to = self.own_callback() if redirect_uri is None or relay_port(redirect_uri) else ""
        here = hub.HubServer.here()
        prefix = here.state_prefix if here else ""
        try:
            scopes = self.broker.settings.login_scopes(self.get_query_argument("scopes", None))
            pending = await self.broker.begin_login(redirect_uri, browser_key, return_to, prefix, scopes)
        except (ConfigError, OAuthError) as exc:
            raise RefusedPage(
                400 if isinstance(exc, ConfigError) else 502, "Cannot start the sign-in", str(exc)
            ) from exc
        self.set_private_cookie(self.cookie_name, browser_key)
        self.redirect(pending.authorize_url)

    def plan_redirect(self) -> str | None:
        """Which redirect URI this login registers (None: the loopback relay's first free port)."""
        settings, here = self.broker.settings, hub.HubServer.here()
        hub_callback = None
        if here is not None and not settings.redirect_uri:
            proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol).split(",")[0].strip()
            hub_callback = here.redirect_uri(f"{proto}://{self.browser_host()}", settings.hub_public_url)
        return choose_redirect_uri(
            settings.redirect_uri, hub_callback, self.browser_on_this_machine(), self.own_callback
        )


class CallbackHandler(_Base):
    """GET callback: the provider's redirect back, with ``code`` and ``state`` (or an error)."""

    @allow_unauthenticated  # a browser signed out of Jupyter goes through login_first
    async def get(self) -> None:
        if not self.current_user:
            self.login_first()
            return
        ticket = self.get_query_argument("exchange", None)
        try:
            if ticket is not None:  # the waiting page looking again
                outcome = self.broker.exchange_under_way(ticket)
            else:
                params = self.callback_params()
                if self.forward_to_named_server(params):
                    return
                cookie = self.get_cookie(self.cookie_name)
                outcome = asyncio.ensure_future(self.broker.finish_login(params, cookie))
            done, _ = await asyncio.wait({outcome}, timeout=LOOK_WAIT if ticket else QUICK_ANSWER)
            if not done:  # a slow provider: say so, and look again (the exchange goes on meanwhile)
                self.send_waiting(self.broker.keep_exchange(outcome, ticket))
                return
            if ticket:
                self.broker.forget_exchange(ticket)
            tokens = outcome.result()
        except LoginRejected as exc:
            raise RefusedPage(400, "Sign-in not accepted", str(exc)) from exc
        except OAuthError as exc:
            raise RefusedPage(
                400 if exc.permanent or exc.error == "invalid_request" else 502, "Sign-in not completed", str(exc)
            ) from exc
        finally:
            self._forget_cookie_if_done()
        self.send_page(
            f"Signed in to TradeStation as {tokens.display_name}.",
            "You can close this tab and go back to your notebook.",
        )

    def send_waiting(self, ticket: str) -> None:
        """202: the exchange with the provider is under way; the page looks again by itself."""
        again = url_path_join(self.base_url, CALLBACK) + "?" + urlencode({"exchange": ticket})
        self._page(
            202,
            "Finishing your sign-in with TradeStation…",
            "TradeStation's sign-in service is slow to answer; the exchange is under way. "
            "This page looks again by itself: keep it open.",
            ok=True,
            look_again=again,
        )

    @property
    def resume_cookie(self) -> str:
        return self.cookie_name.replace("_login_", "_resume_", 1)

    def login_first(self) -> None:
        """Send a browser whose Jupyter session has ended through Jupyter's login, then back.

        Jupyter would put this whole URL, code and state included, in the login page's
        ``next`` parameter, which its request log prints. So the query waits in a short-lived
        httponly cookie, and ``next`` is the bare callback path.
        """
        if self.request.query:
            self.set_private_cookie(self.resume_cookie, base64.urlsafe_b64encode(self.request.query.encode()).decode())
        url = self.get_login_url()
        if "?" not in url:
            url += "?" + urlencode({"next": url_path_join(self.base_url, CALLBACK)})
        self.redirect(url)

    def forward_to_named_server(self, params: dict[str, str]) -> bool:
        """On JupyterHub, a callback for another server of this user goes on to that server
        (the hub's user-redirect lands on the default server unless its hook routes it).

        Raises:
            LoginRejected: state names no server a callback may go to (``..``, ``a/b``).
        """
        here = hub.HubServer.here()
        if here is None:
            return False
        server = hub.server_of(params.get("state", ""))
        if server is None or server == here.server_name:
            return False
        if not hub.forwardable(server):
            raise LoginRejected(
                "This sign-in names no server of yours, so it goes nowhere. "
                "Run %ts_login in your notebook and click the sign-in button again."
            )
        self.redirect(f"{here.callback_of(server)}?{urlencode(params)}")
        return True

    def callback_params(self) -> dict[str, str]:
        """The callback's query; or that of ``auth_response``, the address a browser ended on
        when it could not reach the relay, pasted into the widget's form; or the query that
        waited in a cookie while the browser signed in to Jupyter again.

        Raises:
            LoginRejected: the query is not a callback's (or the provider's error, said plainly).
        """
        query = self.request.query
        saved = self.get_cookie(self.resume_cookie)
        if saved:
            self.clear_cookie(self.resume_cookie, path=self.cookie_path)
        if saved and not query:
            try:
                query = base64.urlsafe_b64decode(saved.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
                raise LoginRejected(
                    "TradeStation sign-in failed: the saved sign-in could not be read. Run %ts_login again"
                ) from exc
        try:
            params = callback_params("?" + query)
            # Named so that Jupyter's request log scrubs it ("auth" is one of its secret words).
            pasted = params.get("auth_response")
            return callback_params(pasted) if pasted else params
        except OAuthError as exc:
            raise LoginRejected(str(exc)) from exc

    def _forget_cookie_if_done(self) -> None:
        key = self.get_cookie(self.cookie_name) or ""
        if not self.broker.has_pending_for(key):
            self.clear_cookie(self.cookie_name, path=self.cookie_path)


class _API(APIHandler):
    """Base of the kernel API: runtime key or the server owner, JSON in and out, no caching."""

    def initialize(self, broker: TokenBroker, key: str) -> None:
        self.broker, self.key = broker, key

    @property
    def key_ok(self) -> bool:
        given = self.request.headers.get(KEY_HEADER, "")
        return bool(given) and same_secret(given, self.key)

    def set_cors_headers(self) -> None:
        """No CORS here, whatever ``allow_origin`` the server has for other routes."""

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        # A browser may call this API only from the server's own pages.
        origin = self.request.headers.get("Origin")
        return self.key_ok or origin is None or urlsplit(origin).netloc == self.request.host

    def check_xsrf_cookie(self) -> None:
        # Only a valid runtime key skips XSRF; a browser session must carry the XSRF token.
        if self.key_ok:
            return None
        return super().check_xsrf_cookie()

    def require_access(self) -> None:
        """Allow the runtime key, or the Jupyter user who owns this server."""
        if self.key_ok:
            return
        if not self.current_user:
            raise web.HTTPError(403, "Send the runtime key or sign in to Jupyter.")
        if not is_owner(self.current_user):
            raise web.HTTPError(403, "Only the owner of this server may use its TradeStation sign-in.")

    def reply(self, data: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class _State(LongPollHandler, _API):
    """A GET of the state that long-polls on ``?since=V[&timeout=S]`` (the one contract of
    :mod:`ts_notebook.longpoll`); ``include_token`` says whether the access token is in it."""

    include_token = False

    @allow_unauthenticated
    async def get(self) -> None:
        self.require_access()
        since = self.get_query_argument("since", "")
        if since:
            try:
                version, timeout = poll_arguments(since, self.get_query_argument("timeout", str(LONGPOLL)))
            except ValueError:
                self.reply({"message": "since must be an integer version and timeout a number of seconds."}, 400)
                return
            if not await self.hold(self.broker.changes, version, timeout):
                return
        self.reply(self.broker.snapshot().to_wire(include_token=self.include_token))


class TokenHandler(_State):
    """GET api/token[?since=V]: the current state with the access token, for kernels."""

    include_token = True


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
        self.reply(self.broker.snapshot().to_wire(include_token=True))


class LogoutHandler(_API):
    """POST api/logout: revoke and forget, for every kernel of this server."""

    @allow_unauthenticated
    async def post(self) -> None:
        self.require_access()
        try:
            was_signed_in, revoke_failure = await self.broker.logout()
        except OAuthError as exc:  # the hub's service could not be reached: nothing changed
            self.reply({"message": str(exc)}, 502)
            return
        self.reply(
            {
                **self.broker.snapshot().to_wire(include_token=False),
                "was_signed_in": was_signed_in,
                "revoke_failure": revoke_failure,
            }
        )


class StatusHandler(_State):
    """GET api/status[?since=V]: the state without the access token, for the browser (JupyterLab's
    status bar long-polls it with its Jupyter session)."""
