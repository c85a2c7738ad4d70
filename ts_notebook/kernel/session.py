"""``ts.session``: a requests.Session whose bearer token is always current.

The token comes from the kernel's cached snapshot (no broker call per request). It is sent
only to the configured API origins, and a 401 triggers one renewal and one resend: through
the session's own request path (its hooks, cookies and redirect rules apply to the resend),
or, for ``ts.auth`` used on its own, from a response hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from ..config import origin
from ..errors import ConfigError, NotSignedIn
from ..protocol import Snapshot
from .state import TokenSource

# (connect, read) seconds for API calls that do not pass their own timeout.
DEFAULT_TIMEOUT = (5.0, 60.0)


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
        snap = self._source().current()
        return snap.sim_api_url if self.sim or snap.env == "sim" else snap.api_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """As :meth:`requests.Session.request`, with relative URLs and a default timeout."""
        url = url.decode() if isinstance(url, bytes) else url
        if not urlsplit(url).scheme:
            url = f"{self.base_url}/{url.lstrip('/')}"
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        resp = super().request(method, url, *args, **kwargs)
        if kwargs.get("auth") is None and isinstance(self.auth, TSAuth) and self.auth.renewed_after(resp):
            # Once more through this same path (as google-auth's AuthorizedSession does): the
            # session's hooks, cookies and redirect rules apply to the resend too.
            resp.content  # noqa: B018 - read the body so the connection can be reused
            resp.close()
            again = super().request(method, url, *args, **kwargs)
            again.history.insert(0, resp)
            return again
        return resp

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect, drop the bearer unless the new URL is an API origin."""
        super().rebuild_auth(prepared_request, response)
        if "Authorization" in prepared_request.headers and not _may_carry_token(
            prepared_request.url or "", self._source().current()
        ):
            del prepared_request.headers["Authorization"]

    def __repr__(self) -> str:
        return f"<TSSession {'sim' if self.sim else 'live or sim per TS_ENV'}>"
