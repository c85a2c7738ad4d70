"""The hub service's protocol with a hub user's servers, in one place: the routes, the
hand-over of a claimed login (:class:`Handover`), and a user's sign-in as it travels.

A server long-polls ``GET signin?since=V`` (the contract of :mod:`ts_notebook.longpoll`),
hands a claimed login's code over with ``POST signin``, signs its user out everywhere with
``DELETE signin``, and asks for a renewal of a refused access token with ``POST refresh``.
The kernel protocol (a server and its kernels) is :mod:`ts_notebook.protocol`. This imports
no Jupyter and no tornado.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import tokens as codec
from .config import SCOPE
from .pending import PendingLogin
from .tokens import TokenSet

# Routes under the service's prefix.
SERVICE_SIGNIN = "api/signin"
SERVICE_REFRESH = "api/refresh"
# The longest code, verifier, nonce, URL or token a server may send: anything longer is refused
# before it is used, token or not.
MAX_FIELD = 4096


class BadHandover(ValueError):
    """A hand-over the service cannot use; the message says which field, for the server."""


def text_field(data: Mapping[str, Any], name: str) -> str:
    """Field ``name`` of a server's request: a non-empty printable text of at most MAX_FIELD.

    Raises:
        BadHandover: it is not.
    """
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD or not value.isprintable():
        raise BadHandover(f"{name} must be a non-empty text of at most {MAX_FIELD} characters.")
    return value


@dataclass(frozen=True)
class Handover:
    """What a user's server sends the service for a claimed login: the callback's code, with
    the PKCE verifier, nonce, callback URL and scopes the login started with."""

    code: str = field(repr=False)
    verifier: str = field(repr=False)
    nonce: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...] = ()

    @classmethod
    def of(cls, pending: PendingLogin, code: str) -> Handover:
        """The hand-over of a claimed login and its callback's code."""
        return cls(code, pending.verifier, pending.nonce, pending.redirect_uri, tuple(pending.scopes))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "code_verifier": self.verifier,
            "nonce": self.nonce,
            "redirect_uri": self.redirect_uri,
            "scopes": list(self.scopes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Handover:
        """Read a server's hand-over.

        Raises:
            BadHandover: a field is missing, too long or not text, or a scope is not a scope name.
        """
        scopes = data.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) and SCOPE.fullmatch(s) for s in scopes):
            raise BadHandover("scopes must be a list of scope names.")
        return cls(
            code=text_field(data, "code"),
            verifier=text_field(data, "code_verifier"),
            nonce=text_field(data, "nonce"),
            redirect_uri=text_field(data, "redirect_uri"),
            scopes=tuple(scopes),
        )

    def pending(self) -> PendingLogin:
        """The login as the service's exchange needs it (its state and address stayed with the
        server that checked the callback)."""
        return PendingLogin(
            state="",
            verifier=self.verifier,
            nonce=self.nonce,
            redirect_uri=self.redirect_uri,
            authorize_url="",
            scopes=self.scopes,
        )


def service_state(version: int, tokens: TokenSet | None, error: str | None, now: float | None = None) -> dict[str, Any]:
    """A hub user's sign-in as the service sends it to that user's servers: the access side
    only (never the refresh token), with seconds left rather than a time, as kernels get it."""
    now = time.time() if now is None else now
    data: dict[str, Any] = {"version": version, "signed_in": tokens is not None, "error": error}
    if tokens is not None:
        data.update(codec.to_json(tokens, now))
    return data


def read_service_state(data: Mapping[str, Any], now: float | None = None) -> tuple[int, TokenSet | None, str | None]:
    """(version, tokens without a refresh token, error) from what the service sent.

    Raises:
        KeyError, TypeError, ValueError: not a state this version understands.
    """
    version, error = int(data["version"]), data.get("error")
    if error is not None and not isinstance(error, str):
        raise TypeError("error is not text")
    if not data.get("signed_in"):
        return version, None, error
    tokens = codec.from_json(data, now)
    return version, tokens.without_refresh(), error
