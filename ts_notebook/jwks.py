"""The provider's signing keys: a JWKS reply read defensively, and the key an id_token names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from .errors import OAuthError

if TYPE_CHECKING:
    import jwt


def parse_jwks(resp: requests.Response) -> list[jwt.PyJWK]:
    """The RSA signing keys of a JWKS reply; keys of other kinds or uses are skipped.

    Raises:
        OAuthError: ``invalid_id_token`` when the reply is not a JWKS with a usable RSA key.
    """
    import jwt

    try:
        doc = resp.json()
    except ValueError:
        doc = None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise OAuthError("invalid_id_token", "the JWKS could not be read")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(jwt.PyJWK.from_dict(entry))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # one unusable key does not spoil the others
    if not keys:
        raise OAuthError("invalid_id_token", "the JWKS lists no usable RSA signing key")
    return keys


def pick_key(keys: list[jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    """The key named ``kid``; with no kid, the one key there is (never a guess among several)."""
    if kid:
        return next((k for k in keys if k.key_id == kid), None)
    return keys[0] if len(keys) == 1 else None
