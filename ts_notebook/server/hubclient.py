"""A hub user's server, signed in through the hub's ts_notebook service.

The server still starts each login and checks its callback (state, cookie binding, PKCE
verifier and nonce stay here); the service exchanges the code with the client secret, keeps
the refresh token and renews. This server long-polls the service for its user's current
access token, as its kernels long-poll the server, so a sign-in, renewal or sign-out in any of
the user's servers reaches every kernel of all of them. It calls as itself, with the server's
own hub token (``JUPYTERHUB_API_TOKEN``); the service answers for the hub user that token
belongs to, and only for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .. import longpoll
from ..backoff import delay as backoff_delay
from ..config import PROVIDER_STEP
from ..errors import ERROR_CODE, NotSignedIn, OAuthError
from ..longpoll import LONGPOLL, LONGPOLL_GRACE, Follower
from ..pending import PendingLogin
from ..service_protocol import SERVICE_REFRESH, SERVICE_SIGNIN, Handover, read_service_state
from ..tokens import TokenSet

log = logging.getLogger(__name__)

# Seconds a call to the service may take (an exchange waits for the provider, and its timeouts).
CALL_TIMEOUT = PROVIDER_STEP + 5.0
UNREACHABLE = "hub_service_unavailable"


class ServiceSignIn:
    """This server's side of its hub user's sign-in (a :class:`~ts_notebook.signin.Holder`).

    Args:
        url: the service's URL, its prefix included, ending in ``/``.
        token: this server's hub token.
        on_change: called on the loop at every change (kernels and widgets are told).
    """

    kept = "Sign-in kept by the hub's ts_notebook service, for all of your servers on this hub."

    def __init__(self, url: str, token: str, on_change: Callable[[], None]) -> None:
        self.url = url
        self._headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        self._on_change = on_change
        self._http = AsyncHTTPClient(force_instance=True)
        self._version = 0
        self._tokens: TokenSet | None = None
        self._error: str | None = None
        self._watching: asyncio.Task[None] | None = None
        self._closed = False
        # Why the service cannot be followed right now (None while it answers).
        self._outage: str | None = None

    @property
    def tokens(self) -> TokenSet | None:
        return self._tokens

    @property
    def error(self) -> str | None:
        return self._outage or self._error

    @property
    def renews(self) -> bool:
        # The hub service holds the refresh token and renews; a sign-in it cannot renew ends.
        return self._tokens is not None

    # -- talking to the service ------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        route: str,
        body: dict[str, Any] | None = None,
        resync: bool = False,
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """One call; the service's JSON reply, applied when it is a state (see :meth:`_apply`).

        Raises:
            OAuthError: the service refused (its error), or could not be reached
                (``hub_service_unavailable``).
            NotSignedIn: the service says this user is not signed in.
        """
        request = HTTPRequest(
            self.url + route,
            method=method,
            headers=self._headers,
            body=None if body is None else json.dumps(body),
            request_timeout=timeout,
            connect_timeout=10,
            follow_redirects=False,
        )
        try:
            resp = await self._http.fetch(request)
            data = json.loads(resp.body)
        except HTTPClientError as exc:
            raise self._refusal(exc) from None
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            reason = f"the hub's ts_notebook service did not answer ({type(exc).__name__})"
            raise OAuthError(UNREACHABLE, reason) from None
        self._apply(data, resync)
        return data

    def _refusal(self, exc: HTTPClientError) -> Exception:
        try:
            data = json.loads(exc.response.body) if exc.response is not None else {}
            error, description = str(data["error"]), str(data.get("description") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return OAuthError(UNREACHABLE, f"the hub's ts_notebook service answered {exc.code}")
        if error == "not_signed_in":
            return NotSignedIn(str(data.get("message", "")))
        if exc.code in (401, 403, 429) and not description:
            description = str(data.get("message", ""))
        wait = str(exc.response.headers.get("Retry-After", "")).strip()
        return OAuthError(error, description, retry_after=min(float(wait), 300.0) if wait.isdigit() else None)

    def _apply(self, data: dict[str, Any], resync: bool = False) -> None:
        """Take up a state the service sent, unless a newer one was taken up already (a reply
        to a call can overtake a long-poll's). With ``resync`` (the long-poll, which asks with
        the version this server holds) an older version is taken up too: the service restarted
        with a clock behind its last run's."""
        try:
            version, tokens, error = read_service_state(data)
        except (KeyError, TypeError, ValueError):
            log.warning("ts_notebook: the hub's ts_notebook service sent a state this server cannot read")
            return
        if version == self._version or (version < self._version and not resync):
            return
        self._version, self._tokens, self._error = version, tokens, error
        self._on_change()

    def _set_outage(self, reason: str | None) -> None:
        if reason != self._outage:
            self._outage = reason
            self._on_change()

    async def _watch(self) -> None:
        """Follow the service's state for as long as the server runs (see ts_notebook.longpoll)."""
        loop, follower = asyncio.get_running_loop(), Follower()
        early = 0  # answers in a row that came back at once with nothing new
        while not self._closed:
            route = f"{SERVICE_SIGNIN}?since={self._version}"
            asked, before = loop.time(), self._version
            try:
                await self._call("GET", route, resync=True, timeout=LONGPOLL + LONGPOLL_GRACE)
                self._set_outage(None)
                follower.answered()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait, down = follower.failed(loop.time())
                if follower.failures == 1:
                    log.warning("ts_notebook: cannot follow the hub's sign-in service (%s); retrying", exc)
                if down:  # not a restart: say so to every kernel
                    self._set_outage(str(exc))
                # A service that asks to be left alone (429: too many of this user's calls wait).
                await asyncio.sleep(max(wait, getattr(exc, "retry_after", None) or 0.0))
                continue
            # Answered with nothing new before it could have been held: whatever the service does,
            # never ask again at once (a service past its cap, or one that does not hold).
            if self._version == before and loop.time() - asked < longpoll.RESTART_STEP:
                early += 1
                await asyncio.sleep(backoff_delay(early, longpoll.RETRY_FIRST, longpoll.RETRY_MOST))
            else:
                early = 0

    # -- what the broker asks ----------------------------------------------------------------------

    async def restore(self) -> None:
        """Read the user's sign-in now (the server starts signed in), then follow it."""
        try:
            await self._call("GET", f"{SERVICE_SIGNIN}?since=0&timeout=0")
        except Exception as exc:
            log.warning("ts_notebook: the hub's ts_notebook service did not answer at start (%s)", exc)
            self._set_outage(str(exc))
        self._watching = asyncio.ensure_future(self._watch())

    async def complete(self, pending: PendingLogin, code: str) -> TokenSet:
        """Hand a claimed login's code, with its PKCE verifier and nonce, to the service."""
        try:
            await self._call("POST", SERVICE_SIGNIN, Handover.of(pending, code).to_json())
        except OAuthError as exc:
            self.fail(str(exc))
            raise
        if self._tokens is None:
            raise OAuthError("invalid_response", "the hub's ts_notebook service kept no sign-in")
        return self._tokens

    def fail(self, message: str) -> None:
        self._error = message
        self._on_change()

    async def _call_through_outage(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call that waits out a short outage of the service (a restart) before failing."""
        deadline = asyncio.get_running_loop().time() + longpoll.OUTAGE_WAIT
        while True:
            try:
                return await self._call(method, route, body)
            except OAuthError as exc:
                if exc.error != UNREACHABLE or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def refresh(self, stale: str | None = None) -> None:
        await self._call_through_outage("POST", SERVICE_REFRESH, {"stale": stale})

    async def logout(self) -> str | None:
        """Sign the hub user out everywhere; why the service's revocation failed, if it did."""
        done = await self._call_through_outage("DELETE", SERVICE_SIGNIN)
        failure = done.get("revoke_failure")
        return failure if isinstance(failure, str) and ERROR_CODE.fullmatch(failure) else None

    def close(self) -> None:
        self._closed = True
        if self._watching is not None:
            self._watching.cancel()
        self._http.close()
