"""The hub service's vault: each hub user's kept sign-in, encrypted at rest.

Records live in one SQLite file (each write is one transaction: a crash leaves the old record
or the new one, never half). Each record is encrypted with Fernet under a key from the
environment, as JupyterHub encrypts ``auth_state`` with ``JUPYTERHUB_CRYPT_KEY``:
``TS_NOTEBOOK_CRYPT_KEY`` holds one or more 32-byte keys (hex or base64), separated by ``;``.
The first encrypts; all decrypt, so keys can be rotated. Without a key the vault refuses to
open; a record no key opens (the key was lost or changed) is reported and read as no sign-in:
that user signs in again, and nothing crashes.

Each record is sealed with the hub user's name and birth (the hub's ``created`` time, see
:mod:`.directory`) inside: a record copied into another user's row opens as nobody's, and one
kept for an earlier user of the same name is known as such.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import TSError
from ..store import StoreError

log = logging.getLogger(__name__)

KEY_VAR = "TS_NOTEBOOK_CRYPT_KEY"
NEW_KEY = "openssl rand -hex 32"


class VaultError(TSError):
    """The vault cannot be used as configured; the message says what to do."""


def parse_keys(text: str) -> list[bytes]:
    """Fernet keys from ``;``-separated 32-byte keys, each hex (64 characters) or base64 (44).

    Raises:
        VaultError: no key, or one that is not 32 bytes.
    """
    keys = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        raw = None
        try:
            if len(part) == 64:
                raw = binascii.a2b_hex(part)
            elif len(part) == 44:
                raw = base64.urlsafe_b64decode(part)
        except (binascii.Error, ValueError):
            raw = None
        if raw is None or len(raw) != 32:
            raise VaultError(f"{KEY_VAR} holds a key that is not 32 bytes in hex or base64. Make one with: {NEW_KEY}")
        keys.append(base64.urlsafe_b64encode(raw))
    if not keys:
        raise VaultError(
            f"Set {KEY_VAR} to a 32-byte key (make one with: {NEW_KEY}); the service keeps "
            "refresh tokens encrypted with it and will not start without it."
        )
    return keys


class Vault:
    """Encrypted records by hub user name, in a SQLite file only the service can read.

    Args:
        path: the database file (made 0600, in a folder made 0700).
        keys: the value of ``TS_NOTEBOOK_CRYPT_KEY``.
    """

    def __init__(self, path: Path, keys: str) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        self._fernet = MultiFernet([Fernet(k) for k in parse_keys(keys)])
        self.path = path
        self.unreadable: set[str] = set()  # users whose record no key opens
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)  # one made earlier, by hand or with another umask, too
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted record's bytes are overwritten
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS signins (user TEXT PRIMARY KEY, sealed BLOB NOT NULL, saved REAL NOT NULL)"
        )

    @classmethod
    def from_environ(cls, path: Path, environ: Mapping[str, str] | None = None) -> Vault:
        """The vault at ``path`` with the key in the environment.

        Raises:
            VaultError: the key is missing or malformed.
        """
        return cls(path, (os.environ if environ is None else environ).get(KEY_VAR, ""))

    def get(self, user: str) -> str | None:
        """``user``'s record, or None (none kept, or none a key opens: said once in the log)."""
        sealed = self._unseal(user)
        return None if sealed is None else sealed["record"]

    def births(self) -> dict[str, str | None]:
        """Every user with a record, and the birth it was kept with (None: kept before
        records were bound, or unreadable)."""
        births = {}
        for user in self.users():
            sealed = self._unseal(user)
            born = sealed.get("born") if sealed else None
            births[user] = born if isinstance(born, str) else None
        return births

    def _unseal(self, user: str) -> dict[str, Any] | None:
        from cryptography.fernet import InvalidToken

        with self._lock:
            row = self._db.execute("SELECT sealed FROM signins WHERE user = ?", (user,)).fetchone()
        if row is None:
            return None
        try:
            sealed = json.loads(self._fernet.decrypt(row[0]))
            if sealed["user"] != user:  # another user's record, copied into this row
                raise ValueError("sealed for another user")
            if not isinstance(sealed["record"], str):
                raise TypeError("not a record")
        except (InvalidToken, ValueError, KeyError, TypeError):
            if user not in self.unreadable:
                self.unreadable.add(user)
                log.warning(
                    "ts_notebook service: the kept sign-in of %s opens with no key in %s (a lost or "
                    "changed key) or was not sealed for them; they will be asked to sign in again",
                    user,
                    KEY_VAR,
                )
            return None
        return sealed  # type: ignore[no-any-return]

    def put(self, user: str, record: str, born: str | None = None) -> None:
        """Keep ``record`` for ``user``, encrypted with their name and birth inside, replacing
        the one before, in one transaction."""
        sealed = self._fernet.encrypt(json.dumps({"user": user, "born": born, "record": record}).encode("utf-8"))
        with self._lock:
            self._db.execute(
                "INSERT INTO signins (user, sealed, saved) VALUES (?, ?, ?) "
                "ON CONFLICT(user) DO UPDATE SET sealed = excluded.sealed, saved = excluded.saved",
                (user, sealed, time.time()),
            )
        self.unreadable.discard(user)

    def delete(self, user: str) -> None:
        """Forget ``user``'s record."""
        with self._lock:
            self._db.execute("DELETE FROM signins WHERE user = ?", (user,))

    def users(self) -> list[str]:
        """Every user with a record."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT user FROM signins ORDER BY user")]

    def rotate(self) -> int:
        """Encrypt every record under the first key (after adding a new key in front); returns
        how many were rewritten. Records no key opens are left as they are."""
        from cryptography.fernet import InvalidToken

        count = 0
        with self._lock:
            rows = self._db.execute("SELECT user, sealed FROM signins").fetchall()
            for user, sealed in rows:
                try:
                    fresh = self._fernet.rotate(sealed)
                except InvalidToken:
                    continue
                self._db.execute("UPDATE signins SET sealed = ? WHERE user = ?", (fresh, user))
                count += 1
        return count

    def lock(self, user: str) -> threading.Lock:
        """The lock renewals of ``user``'s sign-in take (one service process: a thread lock)."""
        with self._lock:
            return self._user_locks.setdefault(user, threading.Lock())

    def close(self) -> None:
        with self._lock:
            self._db.close()


class VaultBackend:
    """One hub user's record in the vault, as the store a :class:`~ts_notebook.store.Store`
    keeps a sign-in in: restore, remember, renew and forget work as they do for one analyst.
    ``born``: the user's birth on the hub, sealed into what is written."""

    def __init__(self, vault: Vault, user: str, born: str | None = None) -> None:
        self.vault, self.user, self.born = vault, user, born
        self.retired = False  # its user is gone: nothing more is written
        self.where = "the hub's ts_notebook service (encrypted)"

    def read(self) -> str | None:
        text = self.vault.get(self.user)
        if text is None and self.user in self.vault.unreadable:
            raise StoreError(
                "The hub's ts_notebook service could not open your kept sign-in (its key was "
                "changed). Run %ts_login to sign in again."
            )
        return text

    def write(self, text: str) -> None:
        if not self.retired:
            self.vault.put(self.user, text, self.born)

    def delete(self) -> None:
        self.vault.delete(self.user)

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return self.vault.lock(self.user)
