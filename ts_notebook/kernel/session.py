"""``ts.session``: a requests.Session whose bearer token is always current.

The token comes from the kernel's cached snapshot (no broker call per request). It is sent
only to the configured API origins, and a 401 triggers one renewal and one resend: through
the session's own request path (its hooks, cookies and redirect rules apply to the resend),
or, for ``ts.auth`` used on its own, from a response hook.

Sending is layered, as httpx's is: a request is retried when it may be repeated
(``_send_retrying``) around one attempt (``_send_renewing``: the request, and after a 401 the
renewal and the resend). A stream opens with one attempt each time and retries by opening
again, on its own schedule, so a failing stream never multiplies the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from ..backoff import delay
from ..errors import ConfigError, NotSignedIn
from .replies import api_error, retry_wait
from .streams import MAX_RECONNECTS, SILENCE, Stream

if TYPE_CHECKING:  # the sign-in's own modules load with the token source, on first use
    from ..protocol import Snapshot
    from .state import TokenSource

# (connect, read) seconds for API calls that do not pass their own timeout.
DEFAULT_TIMEOUT = (5.0, 60.0)
# Seconds to connect when opening a stream (its read timeout is the stream's silence).
STREAM_CONNECT_TIMEOUT = 10.0
# Methods a retry cannot do twice (HTTP's idempotent ones); a POST is never retried.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Replies worth the same request again: the rate limit, and a gateway that could not answer.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# The wait before a retry when the reply names none: this, doubling, at most RETRY_MOST.
RETRY_FIRST, RETRY_MOST = 0.5, 8.0


class APIReply(requests.Response):
    """A reply of TradeStation's API: its ``raise_for_status()`` raises :class:`APIError`, which
    names the scopes granted and the tries made. (A method, not a function set on the reply:
    a reply that held itself would keep its body, 20 MB for 57,600 minute bars, until the
    garbage collector's next full pass, not until dropped.)"""

    granted: tuple[str, ...] = ()
    attempts: int = 1

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise api_error(self, self.granted, self.attempts)


def _release(resp: requests.Response) -> None:
    """Let go of a reply that is not handed back (refused, to be sent again): read its body,
    so that its connection is reused, and close it."""
    resp.content  # noqa: B018 - reading is the point
    resp.close()


@lru_cache(maxsize=64)
def _origin_of(scheme: str, netloc: str) -> str:
    # An origin depends on these two parts only: worked out once per host, not per request
    # (each request asks two or three times, and a few microseconds each is a share of it).
    # The settings module loads here, with the first request, rather than with ts.session.
    from ..config import origin

    return origin(f"{scheme}://{netloc}/")


def _may_carry_token(url: str, snap: Snapshot) -> bool:
    parts = urlsplit(url)
    try:
        return _origin_of(parts.scheme, parts.netloc) in snap.api_origins
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
        _release(resp)
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

    @property
    def subject(self) -> str | None:
        """Who this session's sign-in is at TradeStation (the id_token's ``sub``), or None."""
        snap = self._source().current()
        return snap.user.get("sub") if snap.signed_in else None

    def _base_of(self, snap: Snapshot) -> str:
        return snap.sim_api_url if self.sim or snap.env == "sim" else snap.api_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """As :meth:`requests.Session.request`, with relative URLs, a default timeout, one
        renewal and resend after a 401, and, for requests to the API that may be repeated
        (never a POST), bounded retries after a 429, a 502/503/504 or a dropped connection.
        The reply's ``raise_for_status()`` raises :class:`APIError`, which says what to do.
        """
        method = method.decode() if isinstance(method, bytes) else method
        snap = self._source().current()
        url = self._url(url, snap)
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        ours = _may_carry_token(url, snap)
        retries = snap.max_retries if ours and method.upper() in IDEMPOTENT else 0
        replies, tries = self._send_retrying(method, url, args, kwargs, retries, snap.retry_max_wait)
        return self._answer(replies, snap if ours else None, tries)

    def _send_retrying(
        self, method: str, url: str, args: tuple[Any, ...], kwargs: dict[str, Any], retries: int, budget: float
    ) -> tuple[list[requests.Response], int]:
        """Attempts until one is not worth repeating, at most ``retries`` more after the first
        and ``budget`` seconds of waiting in all: after a dropped connection or a reply in
        RETRY_STATUSES, waiting as the reply says or as the backoff does. Every reply, in
        order (the last is the answer), and how many requests were sent (dropped ones too);
        a connection still dropped at the end raises."""
        replies: list[requests.Response] = []
        waited, retried, dropped, renew = 0.0, 0, 0, True
        while True:
            try:
                attempt = self._send_renewing(method, url, args, kwargs, renew)
            except requests.ConnectionError:
                dropped += 1
                retried += 1
                pause = delay(retried, RETRY_FIRST, RETRY_MOST)
                if retried > retries or waited + pause > budget:
                    raise
            else:
                replies += attempt
                renew = renew and len(attempt) == 1  # one renewal per request, not one per retry
                resp = attempt[-1]
                if resp.status_code not in RETRY_STATUSES or retried >= retries:
                    return replies, len(replies) + dropped
                retried += 1
                pause = retry_wait(resp) or delay(retried, RETRY_FIRST, RETRY_MOST)
                if waited + pause > budget:
                    return replies, len(replies) + dropped
                _release(resp)
            time.sleep(pause)
            waited += pause

    def _send_renewing(
        self, method: str, url: str, args: tuple[Any, ...], kwargs: dict[str, Any], renew: bool = True
    ) -> list[requests.Response]:
        """One attempt: the request, and when the API refused our bearer and a newer token
        came, the same request once more through this same path (as google-auth's
        AuthorizedSession does: the session's hooks, cookies and redirect rules apply to the
        resend too). The replies, in order: one, or the refused one and the resend's."""
        resp = super().request(method, url, *args, **kwargs)
        if renew and kwargs.get("auth") is None and isinstance(self.auth, TSAuth) and self.auth.renewed_after(resp):
            _release(resp)
            return [resp, super().request(method, url, *args, **kwargs)]
        return [resp]

    def _answer(self, replies: list[requests.Response], snap: Snapshot | None, tries: int) -> requests.Response:
        """The last reply, the earlier ones in its history; when the request went to the API
        (``snap``, else None), its ``raise_for_status()`` raises an APIError that counts the
        ``tries``."""
        resp = replies[-1]
        resp.history[:0] = replies[:-1]
        if snap is not None:
            resp.__class__ = APIReply
            resp.granted, resp.attempts = snap.scopes, tries  # type: ignore[attr-defined]
        return resp

    def _url(self, url: str | bytes, snap: Snapshot) -> str:
        url = url.decode() if isinstance(url, bytes) else url
        return url if urlsplit(url).scheme else f"{self._base_of(snap)}/{url.lstrip('/')}"

    def _open_stream(self, path: str, params: Mapping[str, Any], silence: float) -> requests.Response:
        """One attempt at opening a stream (a single GET, and a resend after a renewal): the
        stream's own reconnections are its retries, so never those of :meth:`request`."""
        snap = self._source().current()
        url = self._url(path, snap)
        timeout = (STREAM_CONNECT_TIMEOUT, silence)
        replies = self._send_renewing("GET", url, (), {"params": dict(params), "stream": True, "timeout": timeout})
        return self._answer(replies, snap if _may_carry_token(url, snap) else None, len(replies))

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
        after GoAway, a drop, a refusal worth repeating (429, 5xx; waiting as the reply says,
        within ``retry_max_wait``) or ``silence`` seconds without data, and stops on
        ``close()``, ``break``, a ``with`` block's end or Ctrl-C. See :class:`Stream`.
        """
        return Stream(
            partial(self._open_stream, path, params),
            heartbeats=heartbeats,
            markers=markers,
            silence=silence,
            max_reconnects=max_reconnects,
            max_wait=self._source().current().retry_max_wait,
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
