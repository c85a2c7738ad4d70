"""TokenBroker: the one TradeStation sign-in of a Jupyter server, and the news of its changes.

It lives on the server's event loop. Network calls (discovery, exchange, refresh, revoke) run
in worker threads so the loop never blocks. Every change (a login started, signed in, renewed,
failed, signed out) bumps ``version`` and wakes every long-polling kernel at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..audit import Trail
from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..longpoll import Changes
from ..loopback import relay_port
from ..oauth import OAuthClient, callback_code
from ..pending import MAX_PENDING, PENDING_TTL, Entry, LoginRejected, PendingLogin, PendingLogins
from ..protocol import Snapshot
from ..signin import Holder, SignIn
from ..store import Identity, Store, open_store
from ..tokens import TokenSet
from .hubclient import ServiceSignIn
from .relay import LoopbackRelay

log = logging.getLogger(__name__)

__all__ = ["LoginRejected", "TokenBroker"]


class TokenBroker:
    """Holds the tokens; kernels read them over the loopback API.

    Args:
        settings: resolved settings (the client secret among them).
        clock: monotonic clock for pending-login expiry (tests move it forward).
        config_error: why the settings could not be read; every login then reports it.
        hub_token: this server's JupyterHub token; with ``settings.hub_service_url`` the
            sign-in is the hub service's (one per hub user), else this server's own.
        trail: where this server's own sign-ins, renewals and sign-outs are audited (the hub
            service audits the sign-ins it keeps).
    """

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        config_error: str | None = None,
        hub_token: str | None = None,
        trail: Trail | None = None,
    ) -> None:
        self.settings = settings
        self.config_error = config_error
        self._client: OAuthClient | None = None
        self.clock = clock
        self.changes = Changes()
        self._pending = PendingLogins("this Jupyter server")
        # Exchanges a browser's waiting page looks at again: ticket -> (when kept, the exchange).
        self._exchanges: dict[str, tuple[float, asyncio.Future[TokenSet]]] = {}
        self._closed = False
        # Room for every pending login's exchange at once, and renewals beside them.
        self._pool = ThreadPoolExecutor(max_workers=MAX_PENDING + 4, thread_name_prefix="ts_notebook-broker")
        self.relay = LoopbackRelay(settings.relay_ports, self._relay_target)
        self._opening = 0  # relay logins being started, not yet in _pending
        # Where the sign-in is kept across restarts (nothing is, without a usable key).
        self.signin: Holder
        if settings.hub_service_url and hub_token and not config_error:
            self.signin = ServiceSignIn(settings.hub_service_url, hub_token, self.changes.bump)
        else:
            store = (
                Store(None, Identity.of(settings), "the settings above need fixing first.")
                if config_error
                else open_store(settings)
            )
            self.signin = SignIn(store, lambda: self.client, self._pool, self.changes.bump, trail=trail)

    async def restore(self) -> None:
        """Take up the sign-in kept by an earlier run, if any (see :meth:`SignIn.restore`)."""
        await self.signin.restore()

    # -- change notification -------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The state's version: it goes up at every change."""
        return self.changes.version

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
            self._pending.add(Entry(pending, browser_key, return_to, via_relay))
            added = True
        finally:
            self._opening -= opening
            if not added:
                self._release_relay()
        # When it expires unanswered: release the relay's port, and tell widgets it lapsed.
        asyncio.get_running_loop().call_later(PENDING_TTL + 1, self._expire_pending)
        self.changes.bump()
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

    def _prune(self) -> int:
        gone = self._pending.expire(self.clock())
        self._release_relay()
        return gone

    def _expire_pending(self) -> None:
        if self._prune() and not self._closed:
            self.changes.bump()

    def _release_relay(self) -> None:
        if self.relay.listening and not self._opening and not self._pending.relayed:
            self.relay.close()

    def _relay_target(self, state: str) -> str | None:
        return self._pending.relayed_to(state, self.clock())

    @property
    def login_pending(self) -> bool:
        """True while a started login has not come back (a pure read: expiry is pruned by timers)."""
        return self._pending.live(self.clock())

    def has_pending_for(self, browser_key: str) -> bool:
        """True if this browser still has a login waiting for its callback."""
        return self._pending.has_for(browser_key)

    async def finish_login(self, params: dict[str, str], browser_key: str | None) -> TokenSet:
        """Finish the login a callback's query names, for the browser with ``browser_key``: claim
        it (single use, unexpired, same browser), then exchange its code.

        Raises:
            LoginRejected: not a live pending login of this browser; nothing changed.
            OAuthError: the provider sent an error, or the exchange failed; every widget is
                told why.
        """
        return await self.complete_login(self.take_pending(params.get("state", ""), browser_key), params)

    def keep_exchange(self, exchange: asyncio.Future[TokenSet], ticket: str | None = None) -> str:
        """Keep an exchange under way for its browser to look at again; returns its ticket
        (``ticket`` again when given). Exchanges nobody looked at for 10 minutes are let go."""
        now = self.clock()
        for old in [t for t, (kept, _) in self._exchanges.items() if now - kept > PENDING_TTL]:
            del self._exchanges[old]
        ticket = ticket or secrets.token_urlsafe(24)
        self._exchanges[ticket] = (now, exchange)
        return ticket

    def exchange_under_way(self, ticket: str) -> asyncio.Future[TokenSet]:
        """The exchange a waiting page looks at (``forget_exchange`` once its result is shown).

        Raises:
            LoginRejected: no exchange is kept under that ticket.
        """
        kept = self._exchanges.get(ticket)
        if kept is None:
            raise LoginRejected("This sign-in is not under way here any more. Run %ts_login again.")
        return kept[1]

    def forget_exchange(self, ticket: str) -> None:
        """The exchange's result was shown: its ticket is used up."""
        self._exchanges.pop(ticket, None)

    def take_pending(self, state: str, browser_key: str | None) -> PendingLogin:
        """Claim the pending login named by ``state``: single use, unexpired, same browser.

        Raises:
            LoginRejected: unknown, used or expired state, or another browser's login. Nothing
                changes then, except that an expired login is forgotten.
        """
        try:
            return self._pending.claim(state, browser_key, self.clock())
        finally:
            self._release_relay()

    def fail_login(self, message: str) -> None:
        """Record why a claimed login did not complete, for every widget to show."""
        self.signin.fail(message)

    async def complete_login(self, pending: PendingLogin, params: dict[str, str]) -> TokenSet:
        """Finish a claimed login with its callback's query: exchange the code, verify the
        id_token and make the result the current sign-in, replacing (and revoking) any other.

        Raises:
            OAuthError: the provider sent an error, or the exchange failed; every widget is
                told why.
        """
        try:
            code = callback_code(params)
        except OAuthError as exc:
            self.fail_login(str(exc))
            raise
        return await self.signin.complete(pending, code)

    @property
    def tokens(self) -> TokenSet | None:
        """The current sign-in's tokens, if any."""
        return self.signin.tokens

    @property
    def error(self) -> str | None:
        """Why the last sign-in or renewal failed, if it did."""
        return self.signin.error

    async def refresh(self, stale: str | None = None) -> None:
        """Renew the access token, once however many callers ask at the same time (see
        :meth:`SignIn.refresh`)."""
        await self.signin.refresh(stale)

    async def logout(self) -> tuple[bool, str | None]:
        """Forget the sign-in everywhere and revoke its refresh token at the provider.

        Returns:
            Whether someone was signed in, and why revoking failed if it did.
        """
        was_signed_in = self.signin.tokens is not None
        return was_signed_in, await self.signin.logout()

    def close(self) -> None:
        """Stop the renewal timer and release every watcher (server shutdown)."""
        self._closed = True
        self.signin.close()
        self.changes.close()
        self.relay.close()
        self._pool.shutdown(wait=False)

    # -- what kernels read -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The state every kernel reads (its wire form carries the token only when asked)."""
        return Snapshot.of(
            self.version,
            self.signin.tokens,
            self.settings,
            self.error or self.config_error,
            login_pending=self.login_pending,
            configured=bool(self.settings.client_id) and not self.config_error,
            kept=self.signin.kept,
            renews=self.signin.renews,
        )
