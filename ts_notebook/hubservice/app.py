"""The hub service: one TradeStation sign-in per hub user, exchanged, kept and renewed here.

A user's servers keep the browser's side of a sign-in (the callback, state, cookie binding,
PKCE and nonce) and hand a claimed login's code and verifier to this service, which holds the
client secret. It exchanges the code, verifies the id_token, keeps the refresh token in the
vault (encrypted), renews before expiry, and answers every server of that user with the
current access token (a long-poll, as kernels watch their server). Which user a call is for is
the hub's answer about the caller's token, never a parameter.

Each user's sign-in is a :class:`~ts_notebook.signin.SignIn`, the same keeper a single server
runs, kept in the vault instead of a file, and bound to the user's birth on the hub
(:mod:`.directory`): a record of an earlier user of the same name is revoked and deleted, never
served, and :meth:`Service.sweep` (on a schedule) retires those of users the hub no longer has.
Provider calls run in one pool sized for every user at once, so an exchange or renewal never
waits behind another's. Every sign-in, renewal, sign-out and refusal goes to the audit trail.
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

from requests.adapters import HTTPAdapter
from tornado import web

from ..audit import Audit, Quota, Trail
from ..backoff import delay as backoff_delay
from ..config import Settings
from ..errors import NotSignedIn, OAuthError
from ..hub import forwardable
from ..keeper import call_needed, due
from ..longpoll import LONGPOLL, Changes, LongPollHandler, poll_arguments
from ..oauth import OAuthClient
from ..rates import Bucket
from ..service_protocol import MAX_FIELD, SERVICE_REFRESH, SERVICE_SIGNIN, BadHandover, Handover, service_state
from ..signin import SignIn
from ..store import Identity, Store
from .directory import DirectoryError, HubDirectory, cookieless_session, same_birth
from .vault import Vault, VaultBackend

log = logging.getLogger(__name__)

# Provider calls in flight at once (exchanges, renewals, revocations of every user together).
WORKERS = 256
# Calls to the hub's API in flight at once (who a caller's user is), in a pool of their own: a
# slow hub never holds up a renewal.
HUB_WORKERS = 16
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
# How long the hub's answer about a caller's token is kept: a stopped server's or a deleted
# user's token stops working here within this many seconds.
CALLER_CACHE = 5
# How often every kept sign-in's user is looked up on the hub (a deleted user's sign-in is
# revoked and deleted); a failed sweep is tried again after SWEEP_RETRY, doubling.
SWEEP_EVERY, SWEEP_RETRY = 600.0, 5.0
# Refused calls written to the audit trail, per hub user (callers the hub names no user for
# count as one): REFUSALS_BURST back to back, then REFUSALS_PER_MINUTE; the others are counted,
# and the next line written says how many were left out. A flood cannot fill the disk.
REFUSALS_BURST, REFUSALS_PER_MINUTE = 20, 10
# Why a sign-in is retired with nobody asking (the audit trail's reason).
USER_DELETED = "the hub user was deleted"
USER_REMADE = "a new hub user has this name"
USER_UNBOUND = "kept before sign-ins were bound to their hub user"
# How the service's HTTP server treats connections (see :func:`listen`).
HTTP_LIMITS = {"max_body_size": MAX_BODY, "body_timeout": 30.0, "idle_connection_timeout": 120.0}


class UserSignIn:
    """One hub user's sign-in and the servers watching it.

    Args:
        born: the user's birth on the hub (see :mod:`.directory`); None for a record kept
            before sign-ins were bound, which the user's next call binds.
    """

    def __init__(self, service: Service, name: str, born: str | None) -> None:
        self.name = name
        self.restoring: asyncio.Future[None] | None = None  # taking up the kept sign-in, at start
        self.changes = Changes()
        self.polls = 0  # long-polls waiting
        self.exchanging = False  # a code is being exchanged
        now = service.clock()
        self.forced = Bucket(1, 1 / FORCED_EVERY, now)
        self.exchanges = Bucket(EXCHANGES_PER_MINUTE, EXCHANGES_PER_MINUTE / 60, now)
        self.backend = VaultBackend(service.vault, name, born)
        self.signin = SignIn(
            Store(self.backend, service.identity),
            lambda: service.client,
            service.pool,
            self.changes.bump,
            label=f"hub user {name}",
            trail=Trail(service.audit, hub_user=name),
        )

    @property
    def born(self) -> str | None:
        return self.backend.born

    def state(self) -> dict[str, Any]:
        return service_state(self.changes.version, self.signin.tokens, self.signin.error)


def stale(entry: UserSignIn, born: str | None) -> str | None:
    """Why ``entry`` is not the sign-in of the hub user born at ``born`` (None: the hub has no
    such user), or None when it is. A sign-in kept before sign-ins were bound is one nothing can
    vouch for when it holds tokens; holding none (unreadable: the key changed), it is nobody's."""
    if born is None:
        return USER_DELETED
    if entry.born is None:
        return USER_UNBOUND if entry.signin.tokens is not None else None
    return None if same_birth(entry.born, born) else USER_REMADE


class Service:
    """Every hub user's sign-in.

    Args:
        settings: the key (client id and secret), the sign-in service and the scopes.
        vault: where sign-ins are kept, encrypted.
        directory: the hub's users, as the hub says (each one's birth).
        workers: provider calls in flight at once.
        audit: where events go (None: the ts_notebook.audit logger).
    """

    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        directory: HubDirectory,
        workers: int = WORKERS,
        clock: Callable[[], float] = time.monotonic,
        audit: Audit | None = None,
    ) -> None:
        self.settings, self.vault, self.directory, self.clock = settings, vault, directory, clock
        self.audit = audit or Audit(None, "hub service")
        self.provider = Bucket(PROVIDER_BURST, PROVIDER_RATE, clock())
        self._busy_until, self._busy_times = 0.0, 0
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ts_notebook-service")
        self.hub_pool = ThreadPoolExecutor(max_workers=HUB_WORKERS, thread_name_prefix="ts_notebook-hub")
        http = cookieless_session()  # one session for every user's calls: no cookie is kept
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=workers)  # a connection per call in flight
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        self.client = OAuthClient(settings, http=http)
        self.identity = Identity.of(settings)
        self.users: dict[str, UserSignIn] = {}
        self._retiring: dict[str, asyncio.Future[None]] = {}
        self._refusals: dict[str, Quota] = {}  # by hub user

    def _ask_hub(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self.hub_pool, fn, *args)

    async def user(self, name: str, caller: str | None = None) -> UserSignIn:
        """The sign-in of hub user ``name`` as the hub knows them now, for a call with the hub
        token ``caller`` (made on first use; none kept yet means signed out). One kept for an
        earlier user of that name is retired first.

        Raises:
            RefusedCall: the hub has no such user (403), or could not say (503).
        """
        try:
            born = await self._ask_hub(self.directory.birth, name, caller)
        except DirectoryError as exc:
            log.error("ts_notebook service: %s", exc)
            raise RefusedCall(503, "hub_unavailable", "The hub could not say who you are; try again.") from exc
        if born is None:
            raise RefusedCall(403, "not_a_user", "The hub has no such user.")
        while name in self._retiring:
            await asyncio.shield(self._retiring[name])
        entry = self.users.get(name)
        if entry is not None and entry.restoring is not None:
            await asyncio.wait([entry.restoring])  # what it holds is known only once it is read
        if entry is not None:
            reason = stale(entry, born)
            if reason:  # an earlier user's of this name: its new holder starts signed out
                await self.retire(entry, reason)
                return await self.user(name, caller)
            if entry.born is None:  # (one that holds nothing is bound to whoever comes)
                entry.backend.born = born
        if entry is None:
            entry = self.users[name] = UserSignIn(self, name, born)
        return entry

    async def retire(self, entry: UserSignIn, reason: str) -> None:
        """Revoke and delete ``entry``'s sign-in, which no hub user may have any more (``reason``);
        calls for that name wait until it is gone."""
        if self.users.get(entry.name) is entry:
            del self.users[entry.name]
        done = self._retiring[entry.name] = asyncio.get_running_loop().create_future()
        try:
            if entry.restoring is not None:  # its kept sign-in is read first: the trail says whose
                await asyncio.wait([entry.restoring])
            entry.signin.close()
            entry.backend.retired = True  # a sign-in finishing on it now is kept nowhere
            await entry.signin.logout(reason=reason)  # its waiting servers are told: signed out
            log.info("ts_notebook service: the sign-in kept for hub user %s was retired: %s", entry.name, reason)
        finally:
            del self._retiring[entry.name]
            done.set_result(None)

    async def sweep(self) -> int:
        """Retire the sign-in of every user the hub no longer has, or has made anew; returns
        how many were retired.

        Raises:
            DirectoryError: the hub could not be asked about some users (the others are swept;
                nobody is retired on a guess).
        """
        retired, unknown = 0, 0
        await self._ask_hub(self.directory.check, True)  # "no such user" means that only with the scope
        for name, entry in list(self.users.items()):
            try:
                born = await self._ask_hub(self.directory.birth, name)
            except DirectoryError:
                unknown += 1
                continue
            if self.users.get(name) is not entry:
                continue  # retired or replaced meanwhile
            reason = stale(entry, born)
            if reason:
                await self.retire(entry, reason)
                retired += 1
        if unknown:
            raise DirectoryError(f"the hub could not say who {unknown} of the users are")
        return retired

    async def keep_sweeping(self, every: float = SWEEP_EVERY) -> None:
        """:meth:`sweep` now and every ``every`` seconds; after a failure, again after
        SWEEP_RETRY seconds, doubling up to ``every``."""
        failures = 0
        while True:
            try:
                await self.sweep()
                failures, wait = 0, every
            except Exception as exc:  # whatever failed, the sweeps go on
                failures += 1
                wait = backoff_delay(failures, SWEEP_RETRY, max(every, SWEEP_RETRY))
                why = str(exc) if isinstance(exc, DirectoryError) else repr(exc)
                log.warning(
                    "ts_notebook service: the sweep of deleted hub users failed (%s); again in %.0f s", why, wait
                )
            await asyncio.sleep(wait)

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

    def audit_refusal(self, hub_user: str | None, server: str | None, error: str) -> None:
        """Write a refused call to the audit trail, at the refusals' rate (see REFUSALS_BURST)."""
        now = self.clock()
        quota = self._refusals.get(hub_user or "")
        if quota is None:
            quota = self._refusals[hub_user or ""] = Quota(REFUSALS_BURST, REFUSALS_PER_MINUTE, now)
        write, reason = quota.admit(now, error)
        if write:
            self.audit.record("refused", "refused", hub_user=hub_user, server=server, reason=reason)

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
        """Take up every kept sign-in (renewing those due, all at once), each bound to the
        birth it was kept with."""
        for name, born in self.vault.births().items():
            self.users[name] = UserSignIn(self, name, born)
        for entry in self.users.values():
            entry.restoring = asyncio.ensure_future(entry.signin.restore())
        await asyncio.gather(*(u.restoring for u in self.users.values() if u.restoring), return_exceptions=True)
        taken = sum(u.signin.tokens is not None for u in self.users.values())
        log.info("ts_notebook service: %d kept sign-ins taken up", taken)

    def close(self) -> None:
        """Stop every renewal timer and answer every waiting server (shutdown). Provider calls
        in flight go on: see :meth:`wait_closed`."""
        for entry in self.users.values():
            entry.signin.close()
            entry.changes.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.hub_pool.shutdown(wait=False, cancel_futures=True)

    def wait_closed(self) -> None:
        """Block until the provider calls in flight have ended and what they brought is kept:
        a renewal's rotated refresh token, once the provider has sent it, is the only one left."""
        self.pool.shutdown(wait=True)


class RefusedCall(web.HTTPError):
    """A call the service does not answer; ``error`` and ``message`` go back as JSON."""

    # Whether the audit trail has it already (a provider's refusal is the sign-in's event).
    audited = False

    def __init__(self, status: int, error: str, message: str, description: str = "") -> None:
        super().__init__(status, reason=None)
        self.error, self.message, self.description = error, message, description

    @classmethod
    def oauth(cls, status: int, exc: OAuthError) -> RefusedCall:
        """A provider's refusal, passed on to the server that asked."""
        refused = cls(status, exc.error, str(exc), exc.description)
        refused.audited = True
        return refused


class TooSoon(RefusedCall):
    """429: over a rate or a cap; ``retry_after`` seconds from now it may be asked again."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(429, "slow_down", message)
        self.retry_after = max(1, math.ceil(retry_after))


class ServiceHandler(web.RequestHandler):
    """A call from one of a hub user's servers, identified by its hub token."""

    service: Service
    hub_auth: Any
    hub_user: str | None = None
    # The caller's server, as its token's scopes name it (None: a token of no one server).
    hub_server: str | None = None
    entry: UserSignIn

    def initialize(self, service: Service, hub_auth: Any) -> None:
        self.service, self.hub_auth = service, hub_auth

    async def prepare(self) -> None:
        # The header only: a token in the URL would be written to access logs.
        match = self.hub_auth.auth_header_pat.match(self.request.headers.get("Authorization", ""))
        token = match.group(1) if match else ""
        if not token:
            raise RefusedCall(401, "no_token", "Call this service with a JupyterHub token (Authorization: token ...).")
        model = await self._who(token)
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
        self.hub_server = server_of(model)
        fresh = not self.service.directory.knows(model["name"], token)
        self.entry = await self.service.user(model["name"], token)
        if fresh:  # looked up by name just now: the token must still be that user's
            again = await self._who(token, use_cache=False)
            if not again or again.get("name") != model["name"]:
                raise RefusedCall(403, "not_a_user", "This token is no longer valid on the hub.")

    async def _who(self, token: str, use_cache: bool = True) -> dict[str, Any] | None:
        """The hub's model of the token's owner (None: no valid token)."""
        try:
            return await self.hub_auth.user_for_token(token, use_cache=use_cache, sync=False)  # type: ignore[no-any-return]
        except Exception as exc:
            log.warning("ts_notebook service: the hub could not identify a caller (%s)", type(exc).__name__)
            raise RefusedCall(503, "hub_unavailable", "The hub could not be asked who is calling; try again.") from exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, TooSoon):
            self.set_header("Retry-After", str(exc.retry_after))
        if isinstance(exc, RefusedCall):
            body = {"error": exc.error, "description": exc.description, "message": exc.message}
            if not exc.audited:
                self.service.audit_refusal(self.hub_user, self.hub_server, exc.error)
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


def server_of(model: dict[str, Any]) -> str | None:
    """The one server a caller's token belongs to, from the scopes the hub says it carries
    (``access:servers!server=USER/NAME``, "" for the default server); None for a token of
    the user's that is no one server's (made on the hub's token page, say)."""
    head = f"access:servers!server={model['name']}/"
    named = {s[len(head) :] for s in model.get("scopes", []) if isinstance(s, str) and s.startswith(head)}
    server = named.pop() if len(named) == 1 else None
    return server if server is not None and forwardable(server) and len(server) <= 255 else None


class SignInHandler(LongPollHandler, ServiceHandler):
    """The caller's user's sign-in: read it (long-poll), hand over a code, or sign out."""

    async def get(self) -> None:
        entry = self.entry
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
        entry = self.entry
        if entry.exchanging:  # one at a time per user: a flood of codes cannot fill the pool
            raise RefusedCall(409, "sign_in_under_way", "A sign-in of yours is being finished; wait for it to end.")
        self.service.admit(
            entry.exchanges,
            f"More than {EXCHANGES_PER_MINUTE} sign-ins a minute: wait a minute, then sign in again.",
        )
        entry.exchanging = True
        try:
            await entry.signin.complete(handover.pending(), handover.code, server=self.hub_server)
        except OAuthError as exc:
            self.service.provider_said(exc)
            raise RefusedCall.oauth(400, exc) from exc
        finally:
            entry.exchanging = False
        self.service.provider_said(None)
        self.reply(entry)

    async def delete(self) -> None:
        entry = self.entry
        failure = await entry.signin.logout(server=self.hub_server)
        log.info("ts_notebook service: hub user %s signed out", self.hub_user)
        self.reply(entry, revoke_failure=failure)


class RefreshHandler(ServiceHandler):
    """Renew the caller's user's access token, once however many servers ask."""

    async def post(self) -> None:
        stale = self.body().get("stale")
        if stale is not None and (not isinstance(stale, str) or len(stale) > MAX_FIELD):
            raise RefusedCall(400, "invalid_request", "stale must be the refused access token, or null.")
        entry = self.entry
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
