"""TokenBroker: the one TradeStation sign-in of a Jupyter server, and the news of its changes.

It lives on the server's event loop. Network calls (discovery, exchange, refresh, revoke) run
in worker threads so the loop never blocks. Every change (a login started, signed in, renewed,
failed, signed out) bumps ``version`` and wakes every long-polling kernel at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import ConfigError, NotSignedIn, OAuthError, TSError
from ..keeper import Action, ArmTimer, Forget, Keep, Keeper, Notify, Refresh, Revoke
from ..loopback import relay_port
from ..oauth import PENDING_TTL, OAuthClient, PendingLogin, as_oauth_error, callback_code, same_secret, sign_in_ended
from ..protocol import Snapshot
from ..store import Identity, Memory, open_memory
from ..tokens import TokenSet
from .relay import LoopbackRelay

log = logging.getLogger(__name__)

# At most this many logins may wait for their callback; the oldest is dropped beyond it.
MAX_PENDING = 16


class LoginRejected(TSError):
    """A callback that does not belong to a live pending login of this browser."""


@dataclass
class _Pending:
    login: PendingLogin
    browser_key: str
    # The callback on the origin that started the login: where the relay sends the browser.
    return_to: str
    via_relay: bool


class TokenBroker:
    """Holds the tokens; kernels read them over the loopback API.

    Args:
        settings: resolved settings (the client secret among them).
        clock: monotonic clock for pending-login expiry (tests move it forward).
        config_error: why the settings could not be read; every login then reports it.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        config_error: str | None = None,
    ) -> None:
        self.settings = settings
        self.config_error = config_error
        self._client: OAuthClient | None = None
        self.clock = clock
        self.keeper = Keeper()
        # Start from the wall clock so a kernel that watched a previous server sees a change.
        self.version = int(time.time() * 1000)
        self._pending: dict[str, _Pending] = {}
        self._watchers: set[asyncio.Future[None]] = set()
        # The refresh under way, and the token set it renews (single flight per token set).
        self._inflight: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Room for every pending login's exchange at once, and renewals beside them.
        self._pool = ThreadPoolExecutor(max_workers=MAX_PENDING + 4, thread_name_prefix="ts_notebook-broker")
        self.relay = LoopbackRelay(settings.relay_ports, self._relay_target)
        self._opening = 0  # relay logins being started, not yet in _pending
        # Where the sign-in is kept across restarts (nothing is, without a usable key).
        self.memory = (
            Memory(None, Identity.of(settings), "the settings above need fixing first.")
            if config_error
            else open_memory(settings)
        )

    async def restore(self) -> None:
        """Take up the sign-in kept by an earlier run, if any, and renew it at once; a kept
        sign-in that cannot be used is reported as the reason nobody is signed in."""
        tokens, notice = await self._off_loop(self.memory.restore)
        if tokens is not None:
            log.info("Signed in to TradeStation as %s, from %s", tokens.display_name, self.memory.backend.where)
            self._apply(self.keeper.restored(tokens, time.time()))
        elif notice:
            log.warning("ts_notebook: %s", notice)
            self._apply(self.keeper.failed(notice))

    # -- change notification -------------------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1
        for fut in self._watchers:
            if not fut.done():
                fut.set_result(None)
        self._watchers.clear()

    def watch(self) -> asyncio.Future[None]:
        """A future that resolves at the next change; cancel it to stop watching."""
        fut = asyncio.get_running_loop().create_future()
        self._watchers.add(fut)
        fut.add_done_callback(self._watchers.discard)
        return fut

    def _off_loop(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        # A pool of our own: the loop's default executor may be busy with other extensions.
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def client(self) -> OAuthClient:
        """The protocol client, made on first use so a missing key is reported when it matters."""
        if self.config_error:
            raise ConfigError(self.config_error)
        if self._client is None:
            self._client = OAuthClient(self.settings)
        return self._client

    # -- sign-in ---------------------------------------------------------------------------------

    async def begin_login(
        self,
        redirect_uri: str | None,
        browser_key: str,
        return_to: str,
        state_prefix: str = "",
        scopes: tuple[str, ...] | None = None,
    ) -> PendingLogin:
        """Start a login bound to ``browser_key`` (the value of this browser's login cookie).

        Args:
            redirect_uri: the callback URL to register the login with. None means the loopback
                relay's ``http://localhost:PORT`` on the first free relay port; a configured
                ``http://localhost:PORT`` is relayed on exactly that port.
            browser_key: the login cookie's value.
            return_to: this server's callback on the origin the browser used.
            state_prefix: routing text at the start of state (the hub server's name).
            scopes: the scopes to ask for (default: the setting's).
        """
        client = self.client
        self._prune()
        port = relay_port(redirect_uri) if redirect_uri else None
        opening = redirect_uri is None or port is not None
        via_relay, added = False, False
        # While this login is being started it is not in _pending yet: keep the relay open.
        self._opening += opening
        try:
            if redirect_uri is None:
                redirect_uri, via_relay = self._open_relay(), True
            elif port is not None:
                via_relay = self._relay_on(port)
            # No I/O once discovery is cached: then never queued behind a slow exchange.
            pending = (
                client.begin_login(redirect_uri, state_prefix, scopes)
                if client.discovered
                else await self._off_loop(client.begin_login, redirect_uri, state_prefix, scopes)
            )
            while len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[pending.state] = _Pending(pending, browser_key, return_to, via_relay)
            added = True
        finally:
            self._opening -= opening
            if not added:
                self._release_relay()
        # When it expires unanswered: release the relay's port, and tell widgets it lapsed.
        asyncio.get_running_loop().call_later(PENDING_TTL + 1, self._expire_pending)
        self._bump()
        return pending

    def _open_relay(self) -> str:
        """Listen on the first free relay port; return the relay's address."""
        try:
            return f"http://localhost:{self.relay.open()}"
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen for the sign-in callback on any of the ports {list(self.relay.ports)} "
                f"({exc.strerror}). Free one of them, or register this server's callback URL and set TS_REDIRECT_URI."
            ) from exc

    def _relay_on(self, port: int) -> bool:
        """Listen on the configured callback's port; False (the paste form finishes the sign-in
        then) when it cannot be had: privileged, or another program's."""
        try:
            self.relay.open((port,))
        except OSError as exc:
            log.warning(
                "Cannot listen on port %d of TS_REDIRECT_URI (%s); the browser's address has to be "
                "pasted to finish the sign-in",
                port,
                exc.strerror,
            )
            return False
        return True

    def _prune(self) -> None:
        now = self.clock()
        for state in [s for s, p in self._pending.items() if p.login.expired(now)]:
            del self._pending[state]
        self._release_relay()

    def _expire_pending(self) -> None:
        before = len(self._pending)
        self._prune()
        if len(self._pending) < before and not self._closed:
            self._bump()

    def _release_relay(self) -> None:
        if self.relay.listening and not self._opening and not any(p.via_relay for p in self._pending.values()):
            self.relay.close()

    def _relay_target(self, state: str) -> str | None:
        entry = self._pending.get(state)
        if entry is None or not entry.via_relay or entry.login.expired(self.clock()):
            return None
        return entry.return_to

    @property
    def login_pending(self) -> bool:
        """True while a started login has not come back (a pure read: expiry is pruned by timers)."""
        now = self.clock()
        return any(not p.login.expired(now) for p in self._pending.values())

    def has_pending_for(self, browser_key: str) -> bool:
        """True if this browser still has a login waiting for its callback."""
        return any(same_secret(p.browser_key, browser_key) for p in self._pending.values())

    async def finish_login(self, params: dict[str, str], browser_key: str | None) -> TokenSet:
        """Finish the login a callback's query names, for the browser with ``browser_key``: claim
        it (single use, unexpired, same browser), then exchange its code.

        Raises:
            LoginRejected: not a live pending login of this browser; nothing changed.
            OAuthError: the provider sent an error, or the exchange failed; every widget is
                told why.
        """
        return await self.complete_login(self.take_pending(params.get("state", ""), browser_key), params)

    def take_pending(self, state: str, browser_key: str | None) -> PendingLogin:
        """Claim the pending login named by ``state``: single use, unexpired, same browser.

        Raises:
            LoginRejected: unknown, used or expired state, or another browser's login. Nothing
                changes then, except that an expired login is forgotten.
        """
        entry = self._pending.get(state) if state else None
        if entry is None:
            raise LoginRejected(
                "This sign-in is unknown to this Jupyter server: it was already used, or it was "
                "started by another user or server. Run %ts_login and click the sign-in button again."
            )
        if entry.login.expired(self.clock()):
            del self._pending[state]
            self._release_relay()
            raise LoginRejected("This sign-in took longer than 10 minutes and has expired. Run %ts_login again.")
        if not browser_key or not same_secret(entry.browser_key, browser_key):
            raise LoginRejected(
                "This sign-in was started in another browser. Finish it in the browser where you "
                "clicked the sign-in button, or run %ts_login again here."
            )
        del self._pending[state]
        self._release_relay()
        return entry.login

    def fail_login(self, message: str) -> None:
        """Record why a claimed login did not complete, for every widget to show."""
        self._apply(self.keeper.failed(message))

    async def complete_login(self, pending: PendingLogin, params: dict[str, str]) -> TokenSet:
        """Finish a claimed login with its callback's query: exchange the code, verify the
        id_token and make the result the current sign-in, replacing (and revoking) any other.

        Raises:
            OAuthError: the provider sent an error, or the exchange failed; every widget is
                told why.
        """
        try:
            code = callback_code(params)
            await self._carry_out(self.keeper.replacing())
            tokens = await self._off_loop(self.client.exchange, pending, code)
        except Exception as exc:
            error = as_oauth_error(exc)
            self.fail_login(str(error))
            if error is exc:
                raise
            raise error from exc
        await self._carry_out(self.keeper.signed_in(tokens, time.time()))
        log.info("Signed in to TradeStation as %s", tokens.display_name)
        return tokens

    # -- the keeper's actions, on this event loop ----------------------------------------------------

    @property
    def tokens(self) -> TokenSet | None:
        """The current sign-in's tokens, if any."""
        return self.keeper.tokens

    @property
    def error(self) -> str | None:
        """Why the last sign-in or renewal failed, if it did."""
        return self.keeper.error

    def _apply(self, actions: list[Action]) -> list[asyncio.Future[None]]:
        """Carry out the keeper's actions in order; returns the calls started."""
        revocations = []
        for action in actions:
            if isinstance(action, Notify):
                self._bump()
            elif isinstance(action, ArmTimer):
                self._arm(action.delay)
            elif isinstance(action, Refresh):
                self._inflight = asyncio.ensure_future(self._refresh_once(action.tokens))
                self._inflight.add_done_callback(self._refresh_done)
            elif isinstance(action, Revoke):
                revocations.append(asyncio.ensure_future(self._revoke_quietly(action.refresh_token)))
            elif isinstance(action, Keep):
                revocations.append(self._off_loop(self.memory.remember, action.tokens))
            elif isinstance(action, Forget):
                revocations.append(self._off_loop(self.memory.forget, action.refresh_token))
        return revocations

    async def _carry_out(self, actions: list[Action]) -> None:
        """Carry out the keeper's actions and wait for the calls among them (revoke, keep, forget)."""
        await asyncio.gather(*self._apply(actions))

    def _arm(self, delay: float | None) -> None:
        """(Re)arm the one renewal timer; None disarms it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        if not self._closed:
            self._apply(self.keeper.timer_fired())

    async def refresh(self, stale: str | None = None) -> None:
        """Renew the access token, once however many callers ask at the same time.

        Args:
            stale: the access token the caller found refused. If the current token differs,
                someone renewed already and nothing is sent.

        Raises:
            NotSignedIn: nobody is signed in.
            OAuthError: the renewal failed (permanently: the sign-in has ended, and says so).
        """
        if self.keeper.tokens is None:
            raise NotSignedIn(self.keeper.error or "")
        current = self.keeper.tokens
        self._apply(self.keeper.refresh_wanted(stale))
        if self._inflight is not None and self.keeper.refreshing is current:
            await asyncio.shield(self._inflight)

    def _refresh_done(self, fut: asyncio.Future[None]) -> None:
        if fut is self._inflight:
            self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved here so a refresh nobody awaits does not warn

    async def _refresh_once(self, current: TokenSet) -> None:
        try:
            tokens, fetched = await self._off_loop(self.memory.renew, current, self.client.refresh)
        except Exception as exc:
            ended = sign_in_ended(exc)
            if ended:
                log.warning("The TradeStation sign-in ended: %s", exc.error)  # type: ignore[attr-defined]
            else:
                log.warning(
                    "Renewing the TradeStation token failed (%s); retrying",
                    exc.error if isinstance(exc, OAuthError) else type(exc).__name__,
                )
            await self._carry_out(self.keeper.refresh_failed(current, time.time(), ended))
            raise
        await self._carry_out(self.keeper.refreshed(current, tokens, time.time(), fetched))
        log.info(
            "Renewed the TradeStation access token"
            if fetched
            else "Took up the TradeStation access token another process renewed"
        )

    async def logout(self) -> None:
        """Forget the sign-in everywhere and revoke its refresh token at the provider."""
        await self._carry_out(self.keeper.signed_out())

    async def _revoke_quietly(self, refresh_token: str) -> None:
        try:
            await self._off_loop(self.client.revoke, refresh_token)
        except OAuthError as exc:
            log.warning("Revoking the refresh token failed (%s); it is forgotten here anyway", exc.error)

    def close(self) -> None:
        """Stop the renewal timer and release every watcher (server shutdown)."""
        self._closed = True
        self._arm(None)
        for fut in list(self._watchers):
            fut.cancel()
        self.relay.close()
        self._pool.shutdown(wait=False)

    # -- what kernels read -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The state every kernel reads (its wire form carries the token only when asked)."""
        return Snapshot.of(
            self.version,
            self.keeper.tokens,
            self.settings,
            self.error or self.config_error,
            login_pending=self.login_pending,
            configured=bool(self.settings.client_id) and not self.config_error,
            kept=self.memory.kept,
        )
