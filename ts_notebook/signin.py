"""One sign-in kept on an asyncio loop: the keeper's actions carried out with a thread pool,
a store and an OAuth client.

The server's broker holds one of these; the hub service holds one per hub user. Provider
calls and store writes run in the pool, so the loop never blocks on them; a pool sized for
every sign-in at once means no exchange or renewal waits behind another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from .errors import NotSignedIn, OAuthError
from .keeper import SUPERSEDED, Action, ArmTimer, Drop, Forget, Keep, Keeper, Notify, Refresh, Revoke
from .oauth import OAuthClient, PendingLogin, as_oauth_error, sign_in_ended
from .store import Memory
from .tokens import TokenSet

log = logging.getLogger(__name__)


class Changes:
    """A version that goes up at every change, and the long-polls waiting for the next one.

    Versions start from the wall clock in milliseconds, so whoever followed an earlier run
    (a kernel its server's, a server the hub service's) sees this run's state as newer.
    """

    def __init__(self) -> None:
        self.version = int(time.time() * 1000)
        self._waiting: set[asyncio.Future[None]] = set()

    def bump(self) -> None:
        """Something changed: a new version, and every waiting long-poll answered."""
        self.version += 1
        for fut in self._waiting:
            if not fut.done():
                fut.set_result(None)
        self._waiting.clear()

    def watch(self) -> asyncio.Future[None]:
        """A future that resolves at the next change; cancel it to stop watching."""
        fut = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)
        fut.add_done_callback(self._waiting.discard)
        return fut

    def close(self) -> None:
        """Release every waiting long-poll (shutdown)."""
        for fut in list(self._waiting):
            fut.cancel()


class Holder(Protocol):
    """What a broker asks of the sign-in it serves: :class:`SignIn` here, or the hub
    service's client in a hub user's server."""

    @property
    def tokens(self) -> TokenSet | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def kept(self) -> str: ...

    async def restore(self) -> None: ...

    async def complete(self, pending: PendingLogin, code: str) -> TokenSet: ...

    def fail(self, message: str) -> None: ...

    async def refresh(self, stale: str | None = None) -> None: ...

    async def logout(self) -> str | None: ...

    def close(self) -> None: ...


class SignIn:
    """One sign-in's tokens, renewed before they expire, kept in ``memory``.

    Args:
        memory: where the sign-in is kept (restore, remember, renew, forget).
        client: the protocol client, asked for when a provider call is made (it may raise a
            ConfigError that says what to fix).
        pool: where provider calls and store writes run.
        on_change: called on the loop at every change (kernels and widgets are told).
        label: whose sign-in this is, for the log ("" for a server's own).
    """

    def __init__(
        self,
        memory: Memory,
        client: Callable[[], OAuthClient],
        pool: Executor,
        on_change: Callable[[], None],
        label: str = "",
    ) -> None:
        self.memory = memory
        self._client = client
        self._pool = pool
        self._on_change = on_change
        self._label = f" ({label})" if label else ""
        self.keeper = Keeper()
        # The refresh under way (single flight per token set).
        self._inflight: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def tokens(self) -> TokenSet | None:
        """The current tokens, if signed in."""
        return self.keeper.tokens

    @property
    def error(self) -> str | None:
        """Why the last sign-in or renewal failed, if it did."""
        return self.keeper.error

    @property
    def kept(self) -> str:
        """Where the sign-in is kept across restarts, in words."""
        return self.memory.kept

    def _off_loop(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def restore(self) -> None:
        """Take up the sign-in kept by an earlier run, if any, and renew it at once when due;
        a kept sign-in that cannot be used is reported as the reason nobody is signed in."""
        mark = self.keeper.restoring()
        tokens, notice = await self._off_loop(self.memory.restore)
        if tokens is not None:
            actions = self.keeper.restored(tokens, time.time(), mark)
            if self.keeper.tokens is tokens:
                where = self.memory.backend.where  # type: ignore[union-attr]
                log.info("Signed in to TradeStation as %s%s, from %s", tokens.display_name, self._label, where)
            await self._carry_out(actions)
        elif notice and mark == self.keeper.events:  # not when signed in or out meanwhile
            log.warning("ts_notebook%s: %s", self._label, notice)
            self._apply(self.keeper.failed(notice))

    async def complete(self, pending: PendingLogin, code: str) -> TokenSet:
        """Exchange a claimed login's code, verify its id_token and make the result the
        current sign-in. The one it replaces goes on until then, and is retired as the keeper
        says (dropped when it is the same person's, revoked when another's).

        Raises:
            OAuthError: the exchange failed; the reason is recorded for every listener (the
                sign-in it would have replaced, if any, goes on).
        """
        try:
            tokens = await self._off_loop(self._client().exchange, pending, code)
        except Exception as exc:
            error = as_oauth_error(exc)
            self.fail(str(error))
            if error is exc:
                raise
            raise error from exc
        await self._carry_out(self.keeper.signed_in(tokens, time.time()))
        log.info("Signed in to TradeStation as %s%s", tokens.display_name, self._label)
        return tokens

    def fail(self, message: str) -> None:
        """Record why a sign-in did not complete (the current tokens, if any, stay)."""
        self._apply(self.keeper.failed(message))

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

    async def logout(self) -> str | None:
        """Forget the sign-in (the kept one too) and revoke its refresh token.

        Returns:
            Why revoking failed, if it did (the sign-in is forgotten anyway).
        """
        done = await asyncio.gather(*self._apply(self.keeper.signed_out()))
        return next((answer for answer in done if answer), None)  # only a revocation answers

    def close(self) -> None:
        """Stop the renewal timer (shutdown)."""
        self._closed = True
        self._arm(None)

    # -- the keeper's actions, on this event loop ----------------------------------------------

    def _apply(self, actions: list[Action]) -> list[asyncio.Future[Any]]:
        """Carry out the keeper's actions in order; returns the calls started."""
        calls = []
        for action in actions:
            if isinstance(action, Notify):
                self._on_change()
            elif isinstance(action, ArmTimer):
                self._arm(action.delay)
            elif isinstance(action, Refresh):
                self._inflight = asyncio.ensure_future(self._refresh_once(action.tokens))
                self._inflight.add_done_callback(self._refresh_done)
            elif isinstance(action, Revoke):
                calls.append(asyncio.ensure_future(self._revoke_quietly(action.refresh_token)))
            elif isinstance(action, Drop):
                log.info(SUPERSEDED, self._label)
            elif isinstance(action, Keep):
                calls.append(self._off_loop(self.memory.remember, action.tokens))
            elif isinstance(action, Forget):
                calls.append(self._off_loop(self.memory.forget, action.refresh_token))
        return calls

    async def _carry_out(self, actions: list[Action]) -> None:
        """Carry out the keeper's actions and wait for the calls among them."""
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

    def _refresh_done(self, fut: asyncio.Future[None]) -> None:
        if fut is self._inflight:
            self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved here so a refresh nobody awaits does not warn

    async def _refresh_once(self, current: TokenSet) -> None:
        try:
            tokens, fetched = await self._off_loop(self.memory.renew, current, self._client().refresh)
        except Exception as exc:
            ended = sign_in_ended(exc)
            if ended:
                log.warning("The TradeStation sign-in%s ended: %s", self._label, exc.error)  # type: ignore[attr-defined]
            else:
                log.warning(
                    "Renewing the TradeStation token%s failed (%s); retrying",
                    self._label,
                    exc.error if isinstance(exc, OAuthError) else type(exc).__name__,
                )
            await self._carry_out(self.keeper.refresh_failed(current, time.time(), ended))
            raise
        await self._carry_out(self.keeper.refreshed(current, tokens, time.time(), fetched))
        log.info(
            "Renewed the TradeStation access token%s"
            if fetched
            else "Took up the TradeStation access token%s another process renewed",
            self._label,
        )

    async def _revoke_quietly(self, refresh_token: str) -> str | None:
        """Revoke ``refresh_token``; a failure is logged and returned, not raised."""
        try:
            await self._off_loop(self._client().revoke, refresh_token)
        except OAuthError as exc:
            log.warning("Revoking the refresh token%s failed (%s); it is forgotten here anyway", self._label, exc.error)
            return exc.reason
        return None
