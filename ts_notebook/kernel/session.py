"""``ts.session``: a requests.Session whose bearer token is always current.

The token comes from the kernel's cached snapshot (no broker call per request). It is sent
only to the configured API origins, and a 401 triggers one renewal and one resend: through
the session's own request path (its hooks, cookies and redirect rules apply to the resend),
or, for ``ts.auth`` used on its own, from a response hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from ..config import origin
from ..errors import ConfigError, NotSignedIn
from ..protocol import Snapshot
from .replies import api_error, retry_wait
from .state import TokenSource
from .streams import MAX_RECONNECTS, SILENCE, Stream, open_stream

# (connect, read) seconds for API calls that do not pass their own timeout.
DEFAULT_TIMEOUT = (5.0, 60.0)
# Methods a retry cannot do twice (HTTP's idempotent ones); a POST is never retried.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Replies worth the same request again: the rate limit, and a gateway that could not answer.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2 ...) when the reply names no wait: 0.5 s doubling,
    at most 8 s."""
    return min(8.0, 0.5 * 2 ** (attempt - 1))


def _raise_for_status(resp: requests.Response, granted: tuple[str, ...], attempts: int) -> None:
    if resp.status_code >= 400:
        raise api_error(resp, granted, attempts)


def _may_carry_token(url: str, snap: Snapshot) -> bool:
    try:
        return origin(url) in snap.api_origins
    except ConfigError:
        return False


class TSAuth(AuthBase):
    """Bearer auth from the kernel's token source, for the API origins only.

    Usable on its own: ``requests.get(url, auth=ts.auth)`` (a 401 is then renewed and resent
    from a response hook).

    Args:
        source: returns the kernel's token source.
        resend_on_401: renew and resend from a response hook; a session that resends through
            its own request path turns this off.
    """

    def __init__(self, source: Callable[[], TokenSource], resend_on_401: bool = True) -> None:
        self._source = source
        self.resend_on_401 = resend_on_401

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        snap = self._source().current()
        if not _may_carry_token(r.url or "", snap):
            return r
        if not snap.signed_in:
            raise NotSignedIn(snap.error or "")
        r.headers["Authorization"] = f"Bearer {snap.access_token}"
        if self.resend_on_401:
            r.register_hook("response", self._resend_on_401)
        return r

    def renewed_after(self, resp: requests.Response) -> bool:
        """After the API refused our bearer (401): renew once, however many threads ask; True
        when there is a newer token to resend with.

        Raises:
            NotSignedIn: the sign-in ended (the renewal was refused for good).
        """
        if resp.status_code != 401:
            return False
        # Only a request that carried our bearer to an API origin is renewed and resent: a 401
        # from elsewhere (a redirect target, say) must never receive the token.
        sent = str(resp.request.headers.get("Authorization", ""))
        if not sent.startswith("Bearer ") or not _may_carry_token(resp.request.url or "", self._source().current()):
            return False
        stale = sent[len("Bearer ") :]
        snap = self._source().force_refresh(stale)
        if not snap.signed_in:
            raise NotSignedIn(snap.error or "The API refused the token and it could not be renewed")
        return snap.access_token != stale  # else nothing newer to try: the caller sees the 401

    def _resend_on_401(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        if not self.renewed_after(resp):
            return resp
        snap = self._source().current()
        # Resend once, from a copy: the original request keeps its headers untouched.
        resp.content  # noqa: B018 - read the body so the connection can be reused
        resp.close()
        retry = resp.request.copy()
        retry.headers["Authorization"] = f"Bearer {snap.access_token}"
        again = resp.connection.send(retry, **kwargs)
        again.history.append(resp)
        again.request = retry
        return again


class TSSession(requests.Session):
    """A requests.Session for TradeStation's API.

    Relative URLs join the API base (``ts.session.get("brokerage/accounts")``); every call
    has a timeout unless one is given.

    Args:
        source: returns the kernel's token source (called lazily, so making a session does
            no I/O).
        sim: always use the simulator, whatever TS_ENV says.
    """

    def __init__(self, source: Callable[[], TokenSource], sim: bool = False) -> None:
        super().__init__()
        self._source = source
        self.sim = sim
        self.auth = TSAuth(source, resend_on_401=False)  # resent by request() below

    @property
    def base_url(self) -> str:
        """The API base URL this session joins relative paths to."""
        return self._base_of(self._source().current())

    def _base_of(self, snap: Snapshot) -> str:
        return snap.sim_api_url if self.sim or snap.env == "sim" else snap.api_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """As :meth:`requests.Session.request`, with relative URLs, a default timeout, one
        renewal and resend after a 401, and, for requests to the API that may be repeated
        (never a POST), bounded retries after a 429, a 502/503/504 or a dropped connection.
        The reply's ``raise_for_status()`` raises :class:`APIError`, which says what to do.
        """
        url = url.decode() if isinstance(url, bytes) else url
        method = method.decode() if isinstance(method, bytes) else method
        snap = self._source().current()
        if not urlsplit(url).scheme:
            url = f"{self._base_of(snap)}/{url.lstrip('/')}"
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        ours = _may_carry_token(url, snap)
        retries = snap.max_retries if ours and method.upper() in IDEMPOTENT else 0
        earlier: list[requests.Response] = []
        waited, attempt, retried, renewed = 0.0, 0, 0, False
        while True:
            attempt += 1
            try:
                resp = super().request(method, url, *args, **kwargs)
            except requests.ConnectionError:
                retried += 1
                pause = backoff(retried)
                if retried > retries or waited + pause > snap.retry_max_wait:
                    raise
                time.sleep(pause)
                waited += pause
                continue
            pause = None
            if not renewed and kwargs.get("auth") is None and isinstance(self.auth, TSAuth):
                # Once more through this same path (as google-auth's AuthorizedSession does):
                # the session's hooks, cookies and redirect rules apply to the resend too.
                renewed = self.auth.renewed_after(resp)
                pause = 0.0 if renewed else None
            if pause is None and resp.status_code in RETRY_STATUSES and retried < retries:
                retried += 1
                pause = retry_wait(resp) or backoff(retried)
                if waited + pause > snap.retry_max_wait:
                    pause = None
            if pause is None:
                resp.history[:0] = earlier
                if ours:
                    resp.raise_for_status = partial(_raise_for_status, resp, snap.scopes, attempt)  # type: ignore[method-assign]
                return resp
            resp.content  # noqa: B018 - read the body so the connection can be reused
            resp.close()
            earlier.append(resp)
            if pause:
                time.sleep(pause)
                waited += pause

    def iter_stream(
        self,
        path: str,
        heartbeats: bool = False,
        markers: bool = False,
        silence: float = SILENCE,
        max_reconnects: int = MAX_RECONNECTS,
        **params: Any,
    ) -> Stream:
        """Open one of TradeStation's streams (``marketdata/stream/quotes/MSFT,AAPL``) as an
        iterator of dicts, ``params`` as its query. It outlives the access token, reconnects
        after GoAway, a drop or ``silence`` seconds without data, and stops on ``close()``,
        ``break``, a ``with`` block's end or Ctrl-C. See :class:`Stream`.
        """
        return open_stream(
            self, path, params, heartbeats=heartbeats, markers=markers, silence=silence, max_reconnects=max_reconnects
        )

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect, drop a bearer unless the new URL is an API origin (other credentials,
        from netrc for that host say, stay)."""
        super().rebuild_auth(prepared_request, response)
        sent = str(prepared_request.headers.get("Authorization", ""))
        if sent.startswith("Bearer ") and not _may_carry_token(prepared_request.url or "", self._source().current()):
            del prepared_request.headers["Authorization"]

    def __repr__(self) -> str:
        return f"<TSSession {'sim' if self.sim else 'live or sim per TS_ENV'}>"
