"""RSA signing keys for the emulator's id_tokens, served as a JWKS.

Keys live in memory only; nothing is ever written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

_cache_lock = threading.Lock()
_cached_key: SigningKey | None = None


@dataclass(frozen=True)
class SigningKey:
    """One RS256 key pair and its key id."""

    private_key: rsa.RSAPrivateKey
    kid: str

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with ``kid``, ``alg`` and ``use``."""
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return jwk

    def sign(self, claims: dict[str, Any], with_kid: bool = True) -> str:
        """``claims`` as an RS256 JWT whose header names this key's ``kid`` unless told not to."""
        headers = {"kid": self.kid} if with_kid else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


def new_signing_key() -> SigningKey:
    """A freshly generated 2048-bit key whose kid is its RFC 7638 thumbprint."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return SigningKey(private_key=private_key, kid=kid)


def shared_signing_key() -> SigningKey:
    """A key generated once per process and shared by new emulators.

    Generating RSA keys takes tens of milliseconds; test suites start many emulators.
    """
    global _cached_key
    with _cache_lock:
        if _cached_key is None:
            _cached_key = new_signing_key()
        return _cached_key
