"""The hub service: one TradeStation sign-in per hub user, exchanged, kept and renewed here.

A user's servers keep the browser's side of a sign-in (the callback, state, cookie binding,
PKCE and nonce) and hand a claimed login's code and verifier to this service, which holds the
client secret. It exchanges the code, verifies the id_token, keeps the refresh token in the
vault (encrypted), renews before expiry, and answers every server of that user with the
current access token (a long-poll, as kernels watch their server). Which user a call is for is
the hub's answer about the caller's token, never a parameter.

Each user's sign-in is a :class:`~ts_notebook.signin.SignIn`, the same keeper a single server
runs, kept in the vault instead of a file. Provider calls run in one pool sized for every user
at once, so an exchange or renewal never waits behind another's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tornado import web

from ..backoff import delay as backoff_delay
from ..config import Settings
from ..errors import NotSignedIn, OAuthError
from ..keeper import call_needed, due
from ..longpoll import LONGPOLL, Changes, LongPollHandler, poll_arguments
from ..oauth import OAuthClient
from ..rates import Bucket
from ..service_protocol import MAX_FIELD, SERVICE_REFRESH, SERVICE_SIGNIN, BadHandover, Handover, service_state
from ..signin import SignIn
from ..store import Identity, Store
from .vault import Vault, VaultBackend

log = logging.getLogger(__name__)

# Provider calls in flight at once (exchanges, renewals, revocations of every user together).
WORKERS = 256
# The largest body a server may send: anything longer is refused before it is read.
MAX_BODY = 64 * 1024
# Long-polls one user may keep waiting at once (a server keeps one); more are refused (429)
# and asked to come back after POLL_RETRY seconds.
MAX_POLLS = 32
POLL_RETRY = 5
# Rates of provider calls made on request (ts_notebook.rates): per hub user, a renewal forced by
# a refused token that is not due yet at most once per FORCED_EVERY seconds, and
# EXCHANGES_PER_MINUTE code exchanges a minute (that many back to back); all users together,
# PROVIDER_RATE calls a second (PROVIDER_BURST back to back). The renewals the keepers' timers
# make are not counted: they come once per sign-in and token lifetime. Over a rate: 429 with
# Retry-After. When TradeStation itself answers 429 or 5xx, calls on request wait its
# Retry-After (else BUSY_FIRST doubling to BUSY_MOST seconds) instead of passing the storm on.
FORCED_EVERY = 30.0
EXCHANGES_PER_MINUTE = 3
PROVIDER_RATE, PROVIDER_BURST = 5.0, 20
BUSY_FIRST, BUSY_MOST = 1.0, 60.0
# Provider errors that mean "busy, ask later", not "no".
BUSY_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
# How the service's HTTP server treats connections (see :func:`listen`).
HTTP_LIMITS = {"max_body_size": MAX_BODY, "body_timeout": 30.0, "idle_connection_timeout": 120.0}


class UserSignIn:
    """One hub user's sign-in and the servers watching it."""

    def __init__(self, service: Service, name: str) -> None:
        self.changes = Changes()
        self.polls = 0  # long-polls waiting
        self.exchanging = False  # a code is being exchanged
        now = service.clock()
        self.forced = Bucket(1, 1 / FORCED_EVERY, now)
        self.exchanges = Bucket(EXCHANGES_PER_MINUTE, EXCHANGES_PER_MINUTE / 60, now)
        store = Store(VaultBackend(service.vault, name), service.identity)
        self.signin = SignIn(store, lambda: service.client, service.pool, self.changes.bump, label=f"hub user {name}")

    def state(self) -> dict[str, Any]:
        return service_state(self.changes.version, self.signin.tokens, self.signin.error)


class Service:
    """Every hub user's sign-in.

    Args:
        settings: the key (client id and secret), the sign-in service and the scopes.
        vault: where sign-ins are kept, encrypted.
        workers: provider calls in flight at once.
    """

    def __init__(
        self, settings: Settings, vault: Vault, workers: int = WORKERS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings, self.vault, self.clock = settings, vault, clock
        self.provider = Bucket(PROVIDER_BURST, PROVIDER_RATE, clock())
        self._busy_until, self._busy_times = 0.0, 0
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ts_notebook-service")
        http = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=workers)  # a connection per call in flight
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        self.client = OAuthClient(settings, http=http)
        self.identity = Identity.of(settings)
        self.users: dict[str, UserSignIn] = {}

    def user(self, name: str) -> UserSignIn:
        """``name``'s sign-in (made on first use; none kept yet means signed out)."""
        entry = self.users.get(name)
        if entry is None:
            entry = self.users[name] = UserSignIn(self, name)
        return entry

    def admit(self, mine: Bucket | None, slow_down: str) -> None:
        """Let a provider call on request go ahead, counted against ``mine`` (the caller's own
        rate, if any) and everyone's; else refuse it, counting nothing.

        Raises:
            RefusedCall: 429 with the seconds to wait, and ``slow_down`` (what to do).
        """
        now = self.clock()
        if self._busy_until > now:
            raise TooSoon(
                self._busy_until - now,
                "TradeStation's sign-in service asked to be called less; your sign-in is kept. Try again later.",
            )
        wait = max(mine.wait(now) if mine else 0.0, self.provider.wait(now))
        if wait > 0:
            raise TooSoon(wait, slow_down)
        if mine:
            mine.take(now)
        self.provider.take(now)

    def provider_said(self, exc: OAuthError | None) -> None:
        """What a provider call on request ended with (None: it was answered): when TradeStation
        is busy (429, 5xx), calls on request wait its Retry-After, or a growing while."""
        if exc is None or not (exc.error in BUSY_ERRORS or exc.retry_after is not None):
            self._busy_times = 0
            return
        self._busy_times += 1
        wait = exc.retry_after
        if wait is None:
            wait = backoff_delay(self._busy_times, BUSY_FIRST, BUSY_MOST)
        self._busy_until = max(self._busy_until, self.clock() + min(wait, BUSY_MOST))
        log.warning("ts_notebook service: TradeStation is busy (%s); calls on request wait %.0f s", exc.error, wait)

    async def restore(self) -> None:
        """Take up every kept sign-in (renewing those due, all at once)."""
        names = self.vault.users()
        await asyncio.gather(*(self.user(n).signin.restore() for n in names))
        taken = sum(u.signin.tokens is not None for u in self.users.values())
        log.info("ts_notebook service: %d kept sign-ins taken up", taken)

    def close(self) -> None:
        """Stop every renewal timer and answer every waiting server (shutdown). Provider calls
        in flight go on: see :meth:`wait_closed`."""
        for entry in self.users.values():
            entry.signin.close()
            entry.changes.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def wait_closed(self) -> None:
        """Block until the provider calls in flight have ended and what they brought is kept:
        a renewal's rotated refresh token, once the provider has sent it, is the only one left."""
        self.pool.shutdown(wait=True)


class RefusedCall(web.HTTPError):
    """A call the service does not answer; ``error`` and ``message`` go back as JSON."""

    def __init__(self, status: int, error: str, message: str, description: str = "") -> None:
        super().__init__(status, reason=None)
        self.error, self.message, self.description = error, message, description

    @classmethod
    def oauth(cls, status: int, exc: OAuthError) -> RefusedCall:
        """A provider's refusal, passed on to the server that asked."""
        return cls(status, exc.error, str(exc), exc.description)


class TooSoon(RefusedCall):
    """429: over a rate or a cap; ``retry_after`` seconds from now it may be asked again."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(429, "slow_down", message)
        self.retry_after = max(1, math.ceil(retry_after))


class ServiceHandler(web.RequestHandler):
    """A call from one of a hub user's servers, identified by its hub token."""

    service: Service
    hub_auth: Any
    hub_user: str

    def initialize(self, service: Service, hub_auth: Any) -> None:
        self.service, self.hub_auth = service, hub_auth

    async def prepare(self) -> None:
        # The header only: a token in the URL would be written to access logs.
        match = self.hub_auth.auth_header_pat.match(self.request.headers.get("Authorization", ""))
        token = match.group(1) if match else ""
        if not token:
            raise RefusedCall(401, "no_token", "Call this service with a JupyterHub token (Authorization: token ...).")
        try:
            model = await self.hub_auth.user_for_token(token, sync=False)
        except Exception as exc:
            log.warning("ts_notebook service: the hub could not identify a caller (%s)", type(exc).__name__)
            raise RefusedCall(503, "hub_unavailable", "The hub could not be asked who is calling; try again.") from exc
        if not model or model.get("kind") != "user" or not model.get("name"):
            raise RefusedCall(403, "not_a_user", "Only a hub user's servers may call this service.")
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise RefusedCall(
                403,
                "no_access",
                f"This token lacks {' or '.join(sorted(self.hub_auth.access_scopes))}: give the users' servers "
                "that scope (see the JupyterHub admins page, docs/jupyterhub.md).",
            )
        self.hub_user = model["name"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, TooSoon):
            self.set_header("Retry-After", str(exc.retry_after))
        if isinstance(exc, RefusedCall):
            body = {"error": exc.error, "description": exc.description, "message": exc.message}
        else:
            body = {"error": "server_error", "message": "The ts_notebook service failed; its log says why."}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def reply(self, entry: UserSignIn, **more: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({**entry.state(), **more}))

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RefusedCall(400, "invalid_request", "Send a JSON object.")
        return data


class SignInHandler(LongPollHandler, ServiceHandler):
    """The caller's user's sign-in: read it (long-poll), hand over a code, or sign out."""

    async def get(self) -> None:
        entry = self.service.user(self.hub_user)
        try:
            since, timeout = poll_arguments(
                self.get_argument("since", "0"), self.get_argument("timeout", str(LONGPOLL))
            )
        except ValueError:
            raise RefusedCall(400, "invalid_request", "since must be a whole number and timeout a number.") from None
        if since != entry.changes.version or timeout <= 0:
            self.reply(entry)  # answered at once: nothing held
            return
        if entry.polls >= MAX_POLLS:
            raise TooSoon(
                POLL_RETRY,
                f"{MAX_POLLS} calls of yours are waiting for news already: one per server is enough. Ask again later.",
            )
        entry.polls += 1
        try:
            if not await self.hold(entry.changes, since, timeout):
                return
        finally:
            entry.polls -= 1
        self.reply(entry)

    async def post(self) -> None:
        try:
            handover = Handover.from_json(self.body())
        except BadHandover as exc:
            raise RefusedCall(400, "invalid_request", str(exc)) from None
        entry = self.service.user(self.hub_user)
        if entry.exchanging:  # one at a time per user: a flood of codes cannot fill the pool
            raise RefusedCall(409, "sign_in_under_way", "A sign-in of yours is being finished; wait for it to end.")
        self.service.admit(
            entry.exchanges,
            f"More than {EXCHANGES_PER_MINUTE} sign-ins a minute: wait a minute, then sign in again.",
        )
        entry.exchanging = True
        try:
            await entry.signin.complete(handover.pending(), handover.code)
        except OAuthError as exc:
            self.service.provider_said(exc)
            raise RefusedCall.oauth(400, exc) from exc
        finally:
            entry.exchanging = False
        self.service.provider_said(None)
        self.reply(entry)

    async def delete(self) -> None:
        entry = self.service.user(self.hub_user)
        failure = await entry.signin.logout()
        log.info("ts_notebook service: hub user %s signed out", self.hub_user)
        self.reply(entry, revoke_failure=failure)


class RefreshHandler(ServiceHandler):
    """Renew the caller's user's access token, once however many servers ask."""

    async def post(self) -> None:
        stale = self.body().get("stale")
        if stale is not None and (not isinstance(stale, str) or len(stale) > MAX_FIELD):
            raise RefusedCall(400, "invalid_request", "stale must be the refused access token, or null.")
        entry = self.service.user(self.hub_user)
        tokens = entry.signin.tokens
        if tokens is not None and not call_needed(tokens, stale):
            self.reply(entry)  # nothing refused and nothing due: no provider call on request
            return
        if tokens is not None and not entry.signin.renewing:  # (joining a renewal costs nothing)
            # Forced by a refused token before it is due: the user's own rate, and everyone's.
            self.service.admit(
                None if due(tokens) else entry.forced,
                f"Renewed less than {FORCED_EVERY:.0f} s ago: if TradeStation still refuses the token, wait "
                "and try again, or run %ts_login.",
            )
        try:
            await entry.signin.refresh(stale)
        except NotSignedIn as exc:
            raise RefusedCall(
                409, "not_signed_in", str(exc) or "Not signed in to TradeStation. Run %ts_login."
            ) from exc
        except OAuthError as exc:
            self.service.provider_said(exc)
            raise RefusedCall.oauth(502, exc) from exc
        self.service.provider_said(None)
        self.reply(entry)


class AboutHandler(web.RequestHandler):
    """The service's own page: what it is, no secrets, no sign-in."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ts_notebook hub service: keeps each hub user's TradeStation sign-in for their servers.\n")


def listen(app: web.Application, port: int, address: str) -> Any:
    """Serve ``app`` with the service's limits (bodies, slow and idle connections)."""
    return app.listen(port, address=address, **HTTP_LIMITS)


def make_app(service: Service, hub_auth: Any, prefix: str) -> web.Application:
    """The service's routes under ``prefix`` (``/services/NAME/``)."""
    given = {"service": service, "hub_auth": hub_auth}
    return web.Application(
        [
            (f"{prefix}{SERVICE_SIGNIN}", SignInHandler, given),
            (f"{prefix}{SERVICE_REFRESH}", RefreshHandler, given),
            (f"{prefix}?", AboutHandler),
        ],
    )
