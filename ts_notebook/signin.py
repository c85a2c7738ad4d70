"""One driver of the keeper's actions, and its two adapters.

:class:`Driver` carries out what :class:`~ts_notebook.keeper.Keeper` answers (tell listeners,
arm the timer, refresh, revoke, drop, keep, forget), for every sign-in there is: a server's
own, each hub user's in the hub service, a process with no server. It calls the keeper under
its lock and does the I/O outside it, in the thread that brought the event. Only three things
differ between the places it runs, and an adapter gives them:

- how a renewal is run: in the calling thread (:class:`ThreadSignIn`), or in a pool while the
  event loop goes on (:class:`SignIn`);
- how the renewal timer is armed: a timer thread, or the loop's ``call_later``;
- how listeners are told: at once, or on the loop.

The server's broker and the hub service hold a :class:`SignIn`; the in-process token source
(:mod:`ts_notebook.kernel.local`) holds a :class:`ThreadSignIn`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Protocol

from .audit import Trail
from .errors import NotSignedIn, OAuthError, sign_in_ended
from .keeper import SUPERSEDED, Action, ArmTimer, Drop, Forget, Keep, Keeper, Notify, Refresh, Revoke
from .oauth import OAuthClient, as_oauth_error
from .pending import PendingLogin
from .store import Store
from .tokens import TokenSet

log = logging.getLogger(__name__)

# How long a caller waits for a refresh another caller started (two token endpoint calls, at most).
REFRESH_WAIT = 60.0


class Driver:
    """One sign-in's keeper and the actions it answers, carried out.

    Args:
        store: where the sign-in is kept (restore, remember, renew, forget).
        client: the protocol client, asked for when a provider call is made (it may raise a
            ConfigError that says what to fix).
        label: whose sign-in this is, for the log ("" for a server's or a process's own).
        trail: where sign-ins, renewals and sign-outs are audited (:mod:`ts_notebook.audit`).
    """

    # How loud a kept sign-in that could not be used is in the log (a kernel says it in its
    # status instead, and its stderr is a cell's output).
    notice_level = logging.WARNING

    def __init__(
        self, store: Store, client: Callable[[], OAuthClient], label: str = "", trail: Trail | None = None
    ) -> None:
        self.store = store
        self._client = client
        self.label = f" ({label})" if label else ""
        self.trail = trail or Trail()
        self.keeper = Keeper()
        self.lock = threading.Lock()  # the keeper, the timer and the refresh in flight
        # The refresh in flight, if any: its result (or error) once it ends.
        self.flight: Future[None] | None = None
        # Cancels the renewal timer that is armed, if one is.
        self._timer: Callable[[], None] | None = None
        self._closed = False
        # Why the last revocation failed, if it did (in words, and the provider's error code).
        self.revoke_failure: str | None = None
        self._revoke_error = ""

    # -- what an adapter gives ---------------------------------------------------------------

    def notify(self) -> None:
        """Tell listeners the state changed."""

    def schedule(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` in ``delay`` seconds; returns what cancels it."""
        raise NotImplementedError

    def run_refresh(self, fn: Callable[[], None]) -> None:
        """Run a renewal (``fn``): here, or elsewhere."""
        raise NotImplementedError

    # -- the state ---------------------------------------------------------------------------

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
        return self.store.kept

    @property
    def renewing(self) -> bool:
        """Whether a renewal is under way (a caller asking now joins it)."""
        return self.keeper.refreshing is not None

    @property
    def renews(self) -> bool:
        """Whether the current sign-in renews itself (it holds a refresh token)."""
        tokens = self.keeper.tokens
        return tokens is not None and tokens.refresh_token is not None

    # -- events (each blocks on I/O in the calling thread) -------------------------------------

    def restore_now(self) -> None:
        """Take up the sign-in kept by an earlier run, if any, and renew it at once when due; a
        kept sign-in that cannot be used is reported as the reason nobody is signed in. A
        sign-in or sign-out while it is read wins over it (the keeper decides)."""
        mark = self.keeper.restoring()
        tokens, notice = self.store.restore()
        if tokens is not None:
            self.feed(lambda: self.keeper.restored(tokens, time.time(), mark))
            if self.keeper.tokens is tokens:
                where = self.store.backend.where  # type: ignore[union-attr]
                log.info("Signed in to TradeStation as %s%s, from %s", tokens.display_name, self.label, where)
        elif notice and mark == self.keeper.events:  # not when signed in or out meanwhile
            log.log(self.notice_level, "ts_notebook%s: %s", self.label, notice)
            self.feed(lambda: self.keeper.failed(notice))

    def complete_now(self, pending: PendingLogin, code: str, server: str | None = None) -> TokenSet:
        """Exchange a claimed login's code, verify its id_token and make the result the current
        sign-in. The one it replaces goes on until then, and is retired as the keeper says
        (dropped when it is the same person's, revoked when another's). ``server``: the server
        it was asked from, for the audit trail.

        Raises:
            OAuthError: the exchange failed; the reason is recorded for every listener (the
                sign-in it would have replaced, if any, goes on).
        """
        try:
            tokens = self._client().exchange(pending, code)
        except Exception as exc:
            error = as_oauth_error(exc)
            self.fail(str(error))
            self.trail("signed_in", "failed", server=server, reason=error.error)
            if error is exc:
                raise
            raise error from exc
        self.feed(lambda: self.keeper.signed_in(tokens, time.time()))
        log.info("Signed in to TradeStation as %s%s", tokens.display_name, self.label)
        self.trail("signed_in", "ok", server=server, subject=tokens.user.get("sub"))
        return tokens

    def fail(self, message: str) -> None:
        """Record why a sign-in did not complete (the current tokens, if any, stay)."""
        self.feed(lambda: self.keeper.failed(message))

    def ask_refresh(self, stale: str | None) -> tuple[Future[None] | None, bool]:
        """A caller found ``stale`` refused (None: renew regardless): renew once however many
        ask. Returns the refresh to wait for (None when the token was replaced already), and
        whether this call started it.

        Raises:
            NotSignedIn: nobody is signed in.
        """
        current = self.keeper.tokens
        if current is None:
            raise NotSignedIn(self.keeper.error or "")
        started = self.feed(lambda: self.keeper.refresh_wanted(stale))
        if started is not None:
            return started, True
        with self.lock:
            return (self.flight, False) if self.keeper.refreshing is current else (None, False)

    def logout_now(self, server: str | None = None, reason: str | None = None) -> str | None:
        """Forget the sign-in (the kept one too) and revoke its refresh token. ``server`` (who
        asked) and ``reason`` (why, when nobody asked) go to the audit trail.

        Returns:
            Why revoking failed, if it did (the sign-in is forgotten anyway).
        """
        self.revoke_failure = None
        old = self.keeper.tokens
        self.feed(self.keeper.signed_out)
        if old is not None:
            why = [reason] if reason else []
            if self.revoke_failure:
                why.append(f"revoking it failed ({self._revoke_error})")
            self.trail("signed_out", "ok", server=server, subject=old.user.get("sub"), reason="; ".join(why) or None)
        return self.revoke_failure

    def close(self) -> None:
        """Stop the renewal timer (shutdown); the tokens stay, and stay kept."""
        with self.lock:
            self._closed = True
            self._arm(None)

    # -- carrying out the keeper's actions ------------------------------------------------------

    def feed(self, event: Callable[[], list[Action]]) -> Future[None] | None:
        """Hand one event to the keeper under the lock, then carry out its actions outside it
        (listeners, provider calls, store writes), in order. Returns the refresh it started."""
        started = None
        with self.lock:
            actions = event()
            for action in actions:
                if isinstance(action, ArmTimer):
                    self._arm(action.delay)
                elif isinstance(action, Refresh):
                    started = self.flight = Future()
                    started.set_running_or_notify_cancel()  # waiters cannot cancel it
        for action in actions:
            if isinstance(action, Notify):
                self.notify()
            elif isinstance(action, Refresh):
                self.run_refresh(lambda tokens=action.tokens, flight=started: self._refresh(tokens, flight))
            elif isinstance(action, Revoke):
                self._revoke(action.refresh_token)
            elif isinstance(action, Drop):
                log.info(SUPERSEDED, self.label)
            elif isinstance(action, Keep):
                self.store.remember(action.tokens)
            elif isinstance(action, Forget):
                self.store.forget(action.refresh_token)
        return started

    def _arm(self, delay: float | None) -> None:
        # Under self.lock.
        if self._timer is not None:
            self._timer()
            self._timer = None
        if delay is not None and not self._closed:
            self._timer = self.schedule(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        if not self._closed:
            self.feed(self.keeper.timer_fired)

    def _refresh(self, current: TokenSet, flight: Future[None] | None) -> None:
        try:
            tokens, fetched = self.store.renew(current, self._client().refresh)
        except Exception as exc:  # whatever failed, the keeper decides: retry, or the sign-in ended
            ended = sign_in_ended(exc)
            self.trail(
                "renewed",
                "ended" if ended else "failed",
                subject=current.user.get("sub"),
                reason=exc.error if isinstance(exc, OAuthError) else type(exc).__name__,
            )
            if ended:
                log.warning("The TradeStation sign-in%s ended: %s", self.label, exc.error)  # type: ignore[attr-defined]
            else:
                log.warning(
                    "Renewing the TradeStation token%s failed (%s); retrying",
                    self.label,
                    exc.error if isinstance(exc, OAuthError) else type(exc).__name__,
                )
            self.feed(lambda: self.keeper.refresh_failed(current, time.time(), ended))
            if flight is not None:
                flight.set_exception(exc)
            return
        self.feed(lambda: self.keeper.refreshed(current, tokens, time.time(), fetched))
        if fetched:
            self.trail("renewed", "ok", subject=tokens.user.get("sub"))
        log.info(
            "Renewed the TradeStation access token%s"
            if fetched
            else "Took up the TradeStation access token%s another process renewed",
            self.label,
        )
        if flight is not None:
            flight.set_result(None)

    def _revoke(self, refresh_token: str) -> None:
        """Revoke ``refresh_token``; a failure is logged and kept in ``revoke_failure``."""
        try:
            self._client().revoke(refresh_token)
        except OAuthError as exc:
            log.warning("Revoking the refresh token%s failed (%s); it is forgotten here anyway", self.label, exc.error)
            self.revoke_failure, self._revoke_error = exc.reason, exc.error


class ThreadSignIn(Driver):
    """The driver for threads (a process with no server): a renewal runs in the thread that
    asked for it, the timer is a timer thread, and ``on_change`` is called in whichever thread
    made the change."""

    notice_level = logging.DEBUG

    def __init__(
        self, store: Store, client: Callable[[], OAuthClient], on_change: Callable[[], None], label: str = ""
    ) -> None:
        super().__init__(store, client, label)
        self._on_change = on_change

    def notify(self) -> None:
        self._on_change()

    def schedule(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        timer = threading.Timer(delay, fn)
        timer.daemon = True
        timer.start()
        return timer.cancel

    def run_refresh(self, fn: Callable[[], None]) -> None:
        fn()

    def refresh(self, stale: str) -> None:
        """Renew once however many threads ask; a thread whose token was replaced meanwhile
        goes on with nothing sent, others wait for the refresh under way.

        Raises:
            NotSignedIn: nobody is signed in.
            OAuthError (or what the renewal raised): the renewal this thread ran failed for a
                passing reason (one that ended the sign-in is said in the state instead).
        """
        flight, started = self.ask_refresh(stale)
        if flight is None:
            return
        if not started:
            try:
                flight.result(REFRESH_WAIT)
            except Exception:
                pass  # the thread that ran it says why
            return
        exc = flight.exception()
        if exc is not None and not sign_in_ended(exc):
            raise exc


class Holder(Protocol):
    """What a broker asks of the sign-in it serves: :class:`SignIn` here, or the hub
    service's client in a hub user's server."""

    @property
    def tokens(self) -> TokenSet | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def kept(self) -> str: ...

    @property
    def renews(self) -> bool: ...

    async def restore(self) -> None: ...

    async def complete(self, pending: PendingLogin, code: str) -> TokenSet: ...

    def fail(self, message: str) -> None: ...

    async def refresh(self, stale: str | None = None) -> None: ...

    async def logout(self) -> str | None: ...

    def close(self) -> None: ...


class SignIn(Driver):
    """The driver for an asyncio loop (a server's broker, each hub user's in the hub service):
    provider calls and store writes run in ``pool`` so the loop never blocks on them, the timer
    is the loop's, and ``on_change`` is called on the loop.

    Args:
        store: where the sign-in is kept.
        client: the protocol client (see :class:`Driver`).
        pool: where provider calls and store writes run; sized for every sign-in at once, no
            exchange or renewal waits behind another's.
        on_change: called on the loop at every change (kernels and widgets are told).
        label: whose sign-in this is, for the log.
        trail: the audit trail (see :class:`Driver`).
    """

    def __init__(
        self,
        store: Store,
        client: Callable[[], OAuthClient],
        pool: Executor,
        on_change: Callable[[], None],
        label: str = "",
        trail: Trail | None = None,
    ) -> None:
        super().__init__(store, client, label, trail)
        self._pool = pool
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None

    def _off_loop(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        self._loop = loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool, fn, *args)

    def _on_loop(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` on the loop: now when this is the loop's thread, else soon."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            fn()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    # -- what an adapter gives ---------------------------------------------------------------

    def notify(self) -> None:
        self._on_loop(self._on_change)

    def schedule(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        handle: list[asyncio.TimerHandle] = []
        cancelled = threading.Event()

        def fire() -> None:  # on the loop: the renewal runs in the pool
            if not cancelled.is_set():
                self._submit(fn)

        def arm() -> None:
            if not cancelled.is_set():
                handle.append(asyncio.get_running_loop().call_later(delay, fire))

        def cancel() -> None:
            cancelled.set()
            if handle:
                self._on_loop(handle[0].cancel)

        self._on_loop(arm)
        return cancel

    def run_refresh(self, fn: Callable[[], None]) -> None:
        self._submit(fn)

    def _submit(self, fn: Callable[[], None]) -> None:
        try:
            self._pool.submit(fn)
        except RuntimeError:  # the pool was shut down: the process is stopping
            log.debug("ts_notebook%s: a renewal after shutdown was not run", self.label)

    # -- what the broker asks ------------------------------------------------------------------

    async def restore(self) -> None:
        """See :meth:`Driver.restore_now`; a renewal it starts goes on after it returns."""
        await self._off_loop(self.restore_now)

    async def complete(self, pending: PendingLogin, code: str, server: str | None = None) -> TokenSet:
        """See :meth:`Driver.complete_now`."""
        return await self._off_loop(self.complete_now, pending, code, server)

    async def refresh(self, stale: str | None = None) -> None:
        """Renew the access token, once however many callers ask at the same time.

        Args:
            stale: the access token the caller found refused. If the current token differs,
                someone renewed already and nothing is sent.

        Raises:
            NotSignedIn: nobody is signed in.
            OAuthError: the renewal failed (permanently: the sign-in has ended, and says so).
        """
        self._loop = asyncio.get_running_loop()
        flight, _ = self.ask_refresh(stale)  # on the loop: the renewal itself runs in the pool
        if flight is not None:
            await asyncio.wrap_future(flight)

    async def logout(self, server: str | None = None, reason: str | None = None) -> str | None:
        """See :meth:`Driver.logout_now`."""
        return await self._off_loop(self.logout_now, server, reason)
