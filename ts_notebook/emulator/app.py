"""The ``Emulator``: a real loopback HTTP server faking TradeStation's sign-in and API.

The server runs on its own asyncio loop in a daemon thread so that blocking test code (and
``requests``) can talk to it from the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType, TracebackType
from typing import Any

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .api import ApiHandler
from .base import NotFoundHandler, log_request
from .faults import ConnectionReset, InjectedFailure, StreamBreak, finite_seconds, json_copy
from .keys import new_signing_key, shared_signing_key
from .provider import (
    AuthorizeHandler,
    DiscoveryHandler,
    JwksHandler,
    RevokeHandler,
    TokenHandler,
    UserInfoHandler,
)
from .state import ProviderState
from .streams import StreamHandler

logger = logging.getLogger(__name__)

#: Callback URLs registered for every emulated client unless told otherwise.
DEFAULT_REDIRECT_URIS = [
    "http://localhost",
    "http://localhost:80",
    "http://localhost:3000",
    "http://localhost:3001",
    "http://localhost:8080",
    "http://localhost:31022",
]
_START_TIMEOUT = 10.0
_MAX_BODY_SIZE = 1024 * 1024


def make_app(state: ProviderState) -> web.Application:
    """The tornado application serving ``state``."""
    args = {"state": state}
    return web.Application(
        [
            (r"/\.well-known/openid-configuration", DiscoveryHandler, args),
            (r"/\.well-known/jwks\.json", JwksHandler, args),
            (r"/authorize", AuthorizeHandler, args),
            (r"/oauth/token", TokenHandler, args),
            (r"/oauth/revoke", RevokeHandler, args),
            (r"/userinfo", UserInfoHandler, args),
            (r"/(sim/)?v3/marketdata/stream/(quotes|barcharts|options/chains)/([^/]+)", StreamHandler, args),
            (r"/(sim/)?v3(?:/(.*))?", ApiHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=log_request,
    )


# What revoking a refresh token may end (``Emulator.revocation``).
REVOCATIONS = ("token", "user", "grant")


class Emulator:
    """A local TradeStation sign-in (Auth0-style OIDC) and v3 API subset for one client.

    Args:
        client_id: The one registered client.
        client_secret: Its secret, or None for a public client that must use PKCE.
        redirect_uris: Registered callback URLs; None means ``DEFAULT_REDIRECT_URIS``.
        access_token_lifetime: Seconds an access token lives; may be changed later.
        rotate_refresh_tokens: Whether each refresh replaces the refresh token.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
    """

    def __init__(
        self,
        client_id: str = "test-client",
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
        access_token_lifetime: float = 1200,
        rotate_refresh_tokens: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = ProviderState(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=list(DEFAULT_REDIRECT_URIS if redirect_uris is None else redirect_uris),
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            signing_key=shared_signing_key(),
        )
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Listen and serve in a daemon thread; returns once requests are being answered.

        After ``stop`` this starts the same provider again on the same port, with its
        client, tokens, records and faults as they were: a provider that went down and came back.

        Raises:
            RuntimeError: if already running or the server failed to come up.
            OSError: if the port cannot be bound (e.g. something else took it meanwhile).
        """
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        # Bind here so a taken port fails in the caller and port 0 resolves before url is read.
        sockets = bind_sockets(self._port, address=self._host)
        self._port = sockets[0].getsockname()[1]
        self._state.issuer = self.url + "/"
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sockets, ready), name=f"ts-emulator-{self._port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or self._loop is None:
            self.stop()
            raise RuntimeError("the emulator did not start")
        logger.debug("emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close connections and free the port; safe to call twice.

        Connections to the port are refused until ``start`` is called again. Token calls
        still waiting out ``token_delay`` are dropped without a reply.
        """
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # The loop closed between the check and the call: nothing left to stop.
        thread.join(_START_TIMEOUT)
        self._thread = self._loop = self._stopping = None

    def _run(self, sockets: list[Any], ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(sockets, ready))
        finally:
            ready.set()
            for sock in sockets:
                sock.close()

    async def _serve(self, sockets: list[Any], ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = HTTPServer(make_app(self._state), max_body_size=_MAX_BODY_SIZE)
        server.add_sockets(sockets)
        self._loop = asyncio.get_running_loop()
        ready.set()
        await self._stopping.wait()
        server.stop()
        await server.close_all_connections()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765`` (no trailing slash); known once started."""
        if not self._port:
            raise RuntimeError("start() the emulator first: its port is not chosen yet")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # -- configuration -------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The registered client's id."""
        return self._state.client_id

    @property
    def access_token_lifetime(self) -> float:
        """Seconds each newly issued access token lives."""
        return self._state.access_token_lifetime

    @access_token_lifetime.setter
    def access_token_lifetime(self, seconds: float) -> None:
        self._state.access_token_lifetime = seconds

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Whether each refresh returns a new refresh token and retires the old one."""
        return self._state.rotate_refresh_tokens

    @rotate_refresh_tokens.setter
    def rotate_refresh_tokens(self, rotate: bool) -> None:
        self._state.rotate_refresh_tokens = rotate

    @property
    def revocation(self) -> str:
        """What revoking a refresh token ends, as real providers differ:

        - ``"token"``: that refresh token and the access tokens issued from it (the default);
        - ``"user"``: every refresh token of this key for that user, and their access tokens
          (TradeStation documents that a revoke "revokes all refresh tokens");
        - ``"grant"``: all of that and the user's codes not yet exchanged (oidc-provider, and
          Auth0 with "revocation deletes grant").

        Raises:
            ValueError: on setting anything else.
        """
        return self._state.revocation

    @revocation.setter
    def revocation(self, kind: str) -> None:
        if kind not in REVOCATIONS:
            raise ValueError(f"revocation must be one of {', '.join(REVOCATIONS)}, not {kind!r}")
        self._state.revocation = kind

    def add_redirect_uri(self, uri: str) -> None:
        """Register another callback URL (matched byte for byte)."""
        self._state.add_redirect_uri(uri)

    def rotate_signing_key(self) -> str:
        """Sign with a brand-new key from now on; the JWKS then lists only it.

        Returns:
            The new key's ``kid``.
        """
        key = new_signing_key()
        self._state.set_signing_key(key)
        return key.kid

    # -- fault injection -------------------------------------------------------------------------

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid (the API answers 401)."""
        self._state.revoke_access_tokens()

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token issued so far invalid (refresh answers invalid_grant)."""
        self._state.revoke_refresh_tokens()

    def fail_next_token_request(
        self,
        error: str = "server_error",
        status: int = 500,
        description: str = "The emulator was told to fail this request",
        times: int = 1,
        retry_after: int | None = None,
        grant_type: str | None = None,
    ) -> None:
        """Make the next ``times`` ``/oauth/token`` calls, whatever they are (or only those of
        ``grant_type``: ``"authorization_code"``, ``"refresh_token"``), fail with this reply.

        Scripted calls queue up in order with ``reset_next_token_request`` and are not acted
        on (a code or refresh token sent stays as it was). A request whose body cannot be parsed
        gets its own error and does not use one up. ``retry_after`` adds a Retry-After header
        (as a provider that throttles: ``status=429, error="temporarily_unavailable"``).

        Raises:
            ValueError: if ``times`` is not a positive integer.
        """
        self._state.faults.token_calls.add(InjectedFailure(error, description, status, retry_after, grant_type), times)

    def reset_next_token_request(self, times: int = 1) -> None:
        """Drop the TCP connection of the next ``times`` ``/oauth/token`` calls, with no reply.

        The connection is reset (RST), so the client sees a connection error; the call is not
        acted on. Each one is recorded in ``grants`` with ``ok`` False and ``error``
        ``"connection_reset"``. Queued in order with ``fail_next_token_request``.

        Raises:
            ValueError: if ``times`` is not a positive integer.
        """
        self._state.faults.token_calls.add(ConnectionReset(), times)

    def fail_next_api_request(self, status: int = 503, times: int = 1) -> None:
        """Make the next ``times`` API calls (after the token check) answer ``status`` with
        TradeStation's error body, instead of their real reply.

        Raises:
            ValueError: if ``times`` is not a positive integer or ``status`` is not an error.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        self._state.faults.api_calls.add(status, times)

    @property
    def api_delay(self) -> float:
        """Seconds every API call waits before answering (0 = none).

        Raises:
            ValueError: on setting a negative or non-finite value.
        """
        return self._state.faults.settings.api_delay

    @api_delay.setter
    def api_delay(self, seconds: float) -> None:
        self._state.faults.update(api_delay=finite_seconds(seconds, "api_delay", allow_negative=False))

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``(calls, seconds)`` each user may make per resource (quotes, accounts, other) in a
        rolling window; beyond it the API answers 429 with ``Retry-After`` and the
        ``X-RateLimit-*`` headers, which every reply carries while a limit is set. None = no limit.

        Raises:
            ValueError: on setting a limit below 1 or a period that is not a positive number.
        """
        return self._state.faults.settings.rate_limit

    @rate_limit.setter
    def rate_limit(self, value: tuple[int, float] | None) -> None:
        if value is not None:
            limit, period = int(value[0]), finite_seconds(value[1], "rate_limit period", allow_negative=False)
            if limit < 1 or period <= 0:
                raise ValueError("rate_limit needs at least one call per a positive number of seconds")
            value = (limit, period)
        self._state.faults.update(rate_limit=value)

    @property
    def bar_revision(self) -> int:
        """Shares added to every bar's volume in replies from now on, as a data vendor revises
        bars it sent (late prints): a client that keeps bars must take the revised ones."""
        return self._state.faults.settings.bar_revision

    @bar_revision.setter
    def bar_revision(self, shares: int) -> None:
        self._state.faults.update(bar_revision=int(shares))

    @property
    def failing_symbols(self) -> frozenset[str]:
        """Symbols whose bars requests always answer 503, as one a data feed has trouble with."""
        return self._state.faults.settings.failing_symbols

    @failing_symbols.setter
    def failing_symbols(self, symbols: Any) -> None:
        self._state.faults.update(failing_symbols=frozenset(symbols))

    @property
    def cut_symbols(self) -> frozenset[str]:
        """Symbols whose bars replies break off halfway through the body (the connection
        dropped mid-reply)."""
        return self._state.faults.settings.cut_symbols

    @cut_symbols.setter
    def cut_symbols(self, symbols: Any) -> None:
        self._state.faults.update(cut_symbols=frozenset(symbols))

    def configure_streams(
        self,
        interval: float | None = None,
        heartbeat: float | None = None,
        goaway_after: int | None | str = "keep",
        rechunk_seed: int | None | str = "keep",
    ) -> None:
        """How streams behave: seconds between updates and between heartbeats when idle, a
        ``GoAway`` after this many messages on every connection (None: never), and chunks cut
        at random places from this seed (None: one chunk per message). Unnamed ones stay.
        """
        changes: dict[str, Any] = {}
        if interval is not None:
            changes["stream_interval"] = finite_seconds(interval, "interval", allow_negative=False) or 0.001
        if heartbeat is not None:
            changes["stream_heartbeat"] = finite_seconds(heartbeat, "heartbeat", allow_negative=False) or 0.001
        if goaway_after != "keep":
            changes["stream_goaway_after"] = None if goaway_after is None else int(goaway_after)
        if rechunk_seed != "keep":
            changes["stream_rechunk_seed"] = None if rechunk_seed is None else int(rechunk_seed)
        self._state.faults.update(**changes)

    @property
    def streams_open(self) -> int:
        """Stream replies the emulator is serving right now (a client that let go ends its own)."""
        return self._state.streams_open

    @property
    def streams_opened(self) -> int:
        """Stream connections served since the start."""
        return self._state.streams_opened

    def break_next_stream(self, kind: str, after: int = 0, error: str = "DualLogon", symbol: str = "") -> None:
        """Make the next stream connection, after ``after`` messages, ``"drop"`` (the
        connection closes), go ``"silent"`` (no data and no heartbeat, connection kept) or send
        an ``"error"`` (``error``: ``DualLogon``, ``BadRequest`` ...) and end; an error about
        one ``symbol`` is sent and the stream goes on.

        Raises:
            ValueError: for another kind or a negative count.
        """
        if kind not in ("drop", "silent", "error") or after < 0:
            raise ValueError("kind is drop, silent or error, and after is not negative")
        self._state.faults.streams.add(StreamBreak(kind, after, error, symbol))

    @property
    def token_delay(self) -> float:
        """Seconds every ``/oauth/token`` call waits before answering (0 = none).

        The wait does not hold up any other request. It is fixed when a call arrives.

        Raises:
            ValueError: on setting a negative or non-finite value.
        """
        return self._state.faults.settings.token_delay

    @token_delay.setter
    def token_delay(self, seconds: float) -> None:
        self._state.faults.update(token_delay=finite_seconds(seconds, "token_delay", allow_negative=False))

    @property
    def clock_skew(self) -> float:
        """Seconds added to the clock behind id_token ``iat``/``exp`` (positive = provider ahead).

        Raises:
            ValueError: on setting a non-finite value.
        """
        return self._state.faults.settings.clock_skew

    @clock_skew.setter
    def clock_skew(self, seconds: float) -> None:
        self._state.faults.update(clock_skew=finite_seconds(seconds, "clock_skew", allow_negative=True))

    @property
    def market_clock(self) -> datetime | None:
        """The moment the market stands at (quotes, bars, positions), or None to follow the wall
        clock. Once fixed, a stream's updates are the market one second further on each.

        Raises:
            ValueError: on setting a datetime without a time zone.
        """
        return self._state.faults.settings.market_clock

    @market_clock.setter
    def market_clock(self, moment: datetime | None) -> None:
        if moment is not None:
            if moment.tzinfo is None:
                raise ValueError("market_clock needs a time zone, e.g. datetime(..., tzinfo=timezone.utc)")
            moment = moment.astimezone(timezone.utc).replace(microsecond=0)  # quotes are to the second
        self._state.faults.update(market_clock=moment)

    @property
    def jwks_override(self) -> Any:
        """JSON the JWKS endpoint serves (status 200) instead of the real keys; None = real.

        Raises:
            TypeError: on setting a value that is not JSON-serialisable.
        """
        return json_copy(self._state.faults.settings.jwks_override)

    @jwks_override.setter
    def jwks_override(self, document: Any) -> None:
        self._state.faults.update(jwks_override=json_copy(document))

    @property
    def sign_without_kid(self) -> bool:
        """Whether id_tokens are signed with the current key but carry no ``kid`` header."""
        return self._state.faults.settings.sign_without_kid

    @sign_without_kid.setter
    def sign_without_kid(self, omit: bool) -> None:
        self._state.faults.update(sign_without_kid=bool(omit))

    @property
    def expires_in_override(self) -> Any:
        """JSON value token replies give as ``expires_in``; None = the real lifetime.

        Only the reply lies: the access token still lives ``access_token_lifetime``.

        Raises:
            TypeError: on setting a value that is not JSON-serialisable.
        """
        return json_copy(self._state.faults.settings.expires_in_override)

    @expires_in_override.setter
    def expires_in_override(self, value: Any) -> None:
        self._state.faults.update(expires_in_override=json_copy(value))

    @property
    def discovery_overrides(self) -> Mapping[str, Any]:
        """Top-level keys laid over the discovery document (a read-only copy; assign to change).

        Raises:
            TypeError: on setting something other than a JSON-serialisable mapping of str keys.
        """
        return MappingProxyType(json_copy(self._state.faults.settings.discovery_overrides))

    @discovery_overrides.setter
    def discovery_overrides(self, overrides: Mapping[str, Any]) -> None:
        if not isinstance(overrides, Mapping) or not all(isinstance(k, str) for k in overrides):
            raise TypeError("discovery_overrides must be a mapping with str keys")
        self._state.faults.update(discovery_overrides=json_copy(dict(overrides)))

    # -- what happened ---------------------------------------------------------------------------

    @property
    def grants(self) -> list[dict[str, Any]]:
        """One ``{"grant_type", "ok", "error"}`` per /oauth/token call, oldest first."""
        return self._state.grants()

    @property
    def timed_grants(self) -> list[dict[str, Any]]:
        """As ``grants``, each with ``at``: when it was answered (wall-clock seconds)."""
        return self._state.grants(with_times=True)

    @property
    def api_calls(self) -> list[dict[str, Any]]:
        """One ``{"path", "status", "token_id", "at", "reset", "params"}`` per API request
        (``at``: when it arrived, ``time.time()``; ``reset``: a 429's seconds until its window
        frees a call; ``params``: its query's parameter names), oldest first."""
        return self._state.api_calls()

    @property
    def sets_cookies(self) -> bool:
        """Whether every reply sets a cookie, as a load balancer's stickiness cookie in front of
        a sign-in service does (AWS ALB's ``AWSALB``): a client that keeps cookies sends it back."""
        return self._state.sets_cookies

    @sets_cookies.setter
    def sets_cookies(self, value: bool) -> None:
        self._state.sets_cookies = bool(value)

    @property
    def requests_seen(self) -> list[dict[str, Any]]:
        """One ``{"method", "path", "authorization", "cookie"}`` per HTTP request, oldest first
        (whether each had an Authorization and a Cookie header; never their values)."""
        return self._state.requests_seen()

    def issued_secrets(self) -> set[str]:
        """Every token, code, verifier and client secret issued or received so far."""
        return self._state.issued_secrets()
