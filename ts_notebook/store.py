"""Where a sign-in is kept between runs (``TS_TOKEN_STORE``), and renewal under its lock.

Kinds: ``keyring`` (the OS credential store, through the ``keyring`` package, when it has a
secure backend), ``file`` (``ts_notebook/signin.json`` under the Jupyter data directory, 0600
in a 0700 folder, refused like ssh refuses a key others can read) and ``none``. Unset: keyring
when a secure one is available, else none.

What is kept: the refresh token and the access token with its expiry, the issuer, client id
and scopes they belong to, and the user's name claims; never the client secret. A kept sign-in
for another issuer or key, or one without every scope ``TS_SCOPES`` asks for, is not used (one
made with more, by ``%ts_login --scopes``, is).

Several processes may share one store (a Jupyter server and terminal IPython sessions of one
user). Every renewal takes the store's cross-process lock and re-reads it first: a token set
another process renewed meanwhile is taken over instead of sending a refresh token that was
already spent (with rotating refresh tokens, a provider treats reuse as theft). The new tokens
are written (temp file, fsync, rename) before the lock is released.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from . import tokens as codec
from .errors import TSError, sign_in_ended
from .keeper import take_over
from .tokens import TokenSet

log = logging.getLogger(__name__)

# The stored record's layout; a record of another format is ignored.
FORMAT = 2
# How long a renewal waits for another process's renewal (two provider calls at most).
LOCK_TIMEOUT = 90.0
KEYRING_SERVICE = "ts_notebook"
# How the words on where a sign-in is kept begin when it is not kept (then ": why, what to do").
NOT_KEPT = "Sign-in not kept across restarts"
ENABLE_FILE = (
    "Set TS_TOKEN_STORE=file (or c.TSNotebook.token_store = 'file') to keep it in a private file "
    "under the Jupyter data directory."
)


class StoreError(TSError):
    """The store cannot be used as it is; the message says what to do."""


class StoreBusy(StoreError):
    """Another process held the store's lock too long; renewing again later may work."""


@dataclass(frozen=True)
class Identity:
    """What a kept sign-in must belong to before it is used."""

    issuer: str
    client_id: str
    scopes: tuple[str, ...]

    @classmethod
    def of(cls, settings: Any) -> Identity:
        """The identity the settings sign in with."""
        return cls(settings.signin_url.rstrip("/"), settings.client_id or "", tuple(sorted(settings.scopes)))

    def mismatch(self, record: dict[str, Any]) -> str | None:
        """What differs in ``record`` (None: it is this identity's)."""
        if str(record.get("issuer", "")).rstrip("/") != self.issuer:
            return "another sign-in service (TS_SIGNIN_URL)"
        if record.get("client_id") != self.client_id:
            return "another API key (TS_CLIENT_ID)"
        if not set(self.scopes) <= set(record.get("requested") or ()):
            return "fewer scopes than TS_SCOPES asks for"
        return None


def to_record(identity: Identity, tokens: TokenSet) -> dict[str, Any]:
    """The JSON record kept for ``tokens``: whose they are (issuer and key), and the tokens in
    their one JSON form, the refresh token included. ``requested`` is what the sign-in asked
    for (the settings' scopes when it asked for nothing more)."""
    asked = replace(tokens, requested=tuple(sorted(tokens.requested or identity.scopes)))
    return {
        "format": FORMAT,
        "issuer": identity.issuer,
        "client_id": identity.client_id,
        "saved_at": time.time(),
        **codec.to_json(asked, refresh=True),
    }


def from_record(record: dict[str, Any]) -> TokenSet:
    """The token set of a record.

    Raises:
        KeyError, TypeError, ValueError: the record is damaged.
    """
    return codec.from_json(record, refresh=True)


class Backend(Protocol):
    """Raw storage of one text record, with a lock other processes respect."""

    where: str

    def read(self) -> str | None: ...

    def write(self, text: str) -> None: ...

    def delete(self) -> None: ...

    def lock(self) -> contextlib.AbstractContextManager[Any]: ...


def data_folder() -> Path:
    """``ts_notebook`` under the Jupyter data directory (JUPYTER_DATA_DIR moves it)."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "ts_notebook"


def private_folder(folder: Path) -> Path:
    """Make ``folder`` (0700) if missing; refuse it when others can read it or it is not ours."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private(folder, os.stat(folder))
    except OSError as exc:
        raise StoreError(
            f"Cannot use the folder {folder} for the sign-in ({exc.strerror}). Fix it, or set TS_TOKEN_STORE=none."
        ) from exc
    return folder


def check_private(path: Path, st: os.stat_result) -> None:
    """Refuse ``path`` if someone else owns it or others may read or write it (as ssh does)."""
    if os.name != "posix":
        return
    if st.st_uid != os.geteuid():
        raise StoreError(
            f"The sign-in store {path} belongs to another user (uid {st.st_uid}), so it is not used. "
            f"Remove it, or set TS_TOKEN_STORE=none."
        )
    if st.st_mode & 0o077:
        mode = "700" if stat.S_ISDIR(st.st_mode) else "600"
        raise StoreError(
            f"The sign-in store {path} can be read by other users (mode "
            f"{stat.S_IMODE(st.st_mode):03o}), so it is not used. Run: chmod {mode} {path}"
        )


class FileBackend:
    """A 0600 JSON file in a 0700 folder, replaced atomically, beside its lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"the file {path}"
        self._lock_path = path.with_name(path.name + ".lock")

    def read(self) -> str | None:
        private_folder(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"Cannot read the sign-in store {self.path} ({exc.strerror}). Remove it, or set TS_TOKEN_STORE=none."
            ) from exc
        with os.fdopen(fd, "rb") as f:
            check_private(self.path, os.fstat(f.fileno()))
            return f.read().decode("utf-8", errors="replace")

    def write(self, text: str) -> None:
        folder = private_folder(self.path.parent)
        self._remove_leftovers()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".signin-", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_folder(folder)

    def delete(self) -> None:
        self._remove_leftovers()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _fsync_folder(self.path.parent)

    def _remove_leftovers(self) -> None:
        # Temp files of a writer killed mid-write (under the lock: no writer is running now).
        for leftover in self.path.parent.glob(".signin-*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return _file_lock(self._lock_path)


class KeyringBackend:
    """One entry in the OS credential store; the lock is a file beside the file store's."""

    def __init__(self, keyring: Any, lock_path: Path) -> None:
        self.keyring = keyring
        self.where = f"the system keyring ({type(keyring).__module__}.{type(keyring).__name__})"
        self._lock_path = lock_path

    def read(self) -> str | None:
        return self.keyring.get_password(KEYRING_SERVICE, "sign-in")

    def write(self, text: str) -> None:
        self.keyring.set_password(KEYRING_SERVICE, "sign-in", text)

    def delete(self) -> None:
        from keyring.errors import PasswordDeleteError

        with contextlib.suppress(PasswordDeleteError):
            self.keyring.delete_password(KEYRING_SERVICE, "sign-in")

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return _file_lock(self._lock_path)


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    private_folder(path.parent)
    lock = FileLock(path, timeout=LOCK_TIMEOUT, mode=0o600, thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StoreBusy(
            f"Another process has held the sign-in store's lock ({path}) for over "
            f"{LOCK_TIMEOUT:.0f} s; renewing again shortly."
        ) from exc
    except OSError as exc:  # no locks on this file system, read-only, full
        raise StoreError(
            f"Cannot lock the sign-in store ({path}: {exc.strerror or exc}). Set TS_TOKEN_STORE=none."
        ) from exc
    try:
        yield
    finally:
        lock.release()


def secure_keyring() -> Any | None:
    """The keyring package's backend when it is a secure one (an OS credential store), else None."""
    try:
        import keyring
        from keyring.backends import chainer
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration is no keyring
        return None
    # A chain writes to the first backend that takes a password: keep to the best one alone.
    if isinstance(backend, chainer.ChainerBackend):
        backend = max(backend.backends, key=_priority, default=None)
    # keyring's own scale: below 1 are the failing, null and plaintext backends.
    return backend if backend is not None and _priority(backend) >= 1 else None


def _priority(backend: Any) -> float:
    try:
        return float(backend.priority)
    except Exception:
        return 0.0


class Store:
    """The kept sign-in of one identity: restore it, remember a new one, forget it, and renew
    under the store's lock. With no backend, renewals just refresh and nothing is kept.

    Args:
        backend: where records go; None keeps nothing.
        identity: whose sign-in this is.
        note: why nothing is kept, when nothing is, and what to do (for ``%ts_status``).
    """

    def __init__(self, backend: Backend | None, identity: Identity, note: str = "") -> None:
        self.backend = backend
        self.identity = identity
        self.note = note
        self.problem: str | None = None  # the last reason the store could not be used

    @property
    def kept(self) -> str:
        """Where the sign-in is kept across restarts, in words."""
        if self.backend is None:
            return f"{NOT_KEPT}: {self.note}"
        if self.problem:
            return f"{NOT_KEPT}: {self.problem}"
        return f"Sign-in kept across restarts in {self.backend.where}."

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Backend]:
        assert self.backend is not None
        with self.backend.lock():  # a lock file opened anew each time: threads exclude each other too
            yield self.backend

    def _load(self, backend: Backend) -> tuple[TokenSet | None, str | None]:
        """The kept tokens of this identity, or None and why not (None: nothing kept)."""
        text = backend.read()
        if text is None:
            return None, None
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise ValueError("not a record of this format")
            mismatch = self.identity.mismatch(record)
            if mismatch:
                return None, (
                    f"The sign-in kept in {backend.where} is for {mismatch}, so it was not used. "
                    "Run %ts_login to sign in with the current settings."
                )
            return from_record(record), None
        except (KeyError, TypeError, ValueError, ArithmeticError, RecursionError):
            return None, (
                f"The sign-in kept in {backend.where} is unreadable (damaged or cut short) and was "
                "ignored. Run %ts_login to sign in again."
            )

    def _store(self, backend: Backend, tokens: TokenSet) -> None:
        try:
            backend.write(json.dumps(to_record(self.identity, tokens)))
            self.problem = None
        except Exception as exc:  # keep going in memory: the sign-in itself is good
            self.problem = str(exc) if isinstance(exc, StoreError) else f"writing {backend.where} failed ({exc})"
            log.warning("ts_notebook: %s", self.problem)

    def restore(self) -> tuple[TokenSet | None, str | None]:
        """The kept sign-in, or None and a one-line reason to show (None: nothing was kept)."""
        if self.backend is None:
            return None, None
        try:
            with self._locked() as backend:
                return self._load(backend)
        except StoreError as exc:
            self.problem = str(exc)
            return None, str(exc)
        except Exception as exc:  # a keyring daemon that fails, say: signed out, never a crash
            self.problem = f"reading {self.backend.where} failed ({type(exc).__name__})"
            return None, f"The kept sign-in could not be read ({self.problem}). Run %ts_login to sign in."

    def remember(self, tokens: TokenSet) -> None:
        """Keep ``tokens`` (a new sign-in), replacing whatever was kept."""
        if self.backend is None:
            return
        try:
            with self._locked() as backend:
                self._store(backend, tokens)
        except StoreError as exc:
            self.problem = str(exc)
            log.warning("ts_notebook: %s", exc)

    def forget(self, refresh_token: str | None = None) -> None:
        """Delete the kept sign-in: only if it still holds ``refresh_token``, unless None."""
        if self.backend is None:
            return
        try:
            with self._locked() as backend:
                if refresh_token is not None:
                    kept, _ = self._load(backend)
                    if kept is None or kept.refresh_token != refresh_token:
                        return
                backend.delete()
        except Exception as exc:
            log.warning("ts_notebook: forgetting the kept sign-in failed (%s)", exc)

    def renew(
        self, tokens: TokenSet, refresh: Callable[[TokenSet], TokenSet], now: Callable[[], float] = time.time
    ) -> tuple[TokenSet, bool]:
        """Renew ``tokens`` with ``refresh``, or take over what another process kept meanwhile.

        Returns:
            (the current tokens, whether this call fetched them from the provider).

        Raises:
            whatever ``refresh`` raised; StoreError when the lock could not be had.
        """
        if self.backend is None:
            return refresh(tokens), True
        try:
            with self._locked() as backend:
                return self._renew_locked(backend, tokens, refresh, now())
        except StoreBusy:
            raise
        except StoreError as exc:  # a refused folder: renew anyway, keep nothing
            self.problem = str(exc)
            return refresh(tokens), True

    def _renew_locked(
        self, backend: Backend, tokens: TokenSet, refresh: Callable[[TokenSet], TokenSet], now: float
    ) -> tuple[TokenSet, bool]:
        try:
            kept, _ = self._load(backend)
            refused = False
        except StoreError as exc:  # left as it is until the user fixes it
            self.problem, kept, refused = str(exc), None, True
        decision, base = take_over(kept, tokens, now)
        if decision == "another person":
            assert kept is not None
            self.problem = (
                f"{backend.where} holds the sign-in of {kept.display_name}, another TradeStation account, "
                f"so this one ({tokens.display_name}) is kept in this process only"
            )
            return refresh(tokens), True
        if decision == "take":
            return base, False  # another process renewed: its tokens, nothing sent
        try:
            renewed = refresh(base)
        except Exception as exc:
            if sign_in_ended(exc) and kept is not None and kept.refresh_token == base.refresh_token:
                backend.delete()  # refused for good: not tried again at the next start
            raise
        if not refused:
            self._store(backend, renewed)
        return renewed, True


def open_store(settings: Any) -> Store:
    """The store ``settings.token_store`` names (None: keyring if secure, else none).

    Raises:
        StoreError: ``keyring`` was asked for and no secure keyring is available.
    """
    identity = Identity.of(settings)
    kind = settings.token_store
    if kind == "none":
        return Store(None, identity, f"TS_TOKEN_STORE=none. {ENABLE_FILE}")
    if kind == "file":
        return Store(FileBackend(data_folder() / "signin.json"), identity)
    keyring = secure_keyring()
    if keyring is None:
        if kind == "keyring":
            return Store(None, identity, f"TS_TOKEN_STORE=keyring, but no secure system keyring is here. {ENABLE_FILE}")
        return Store(None, identity, f"no secure system keyring here. {ENABLE_FILE}")
    return Store(KeyringBackend(keyring, data_folder() / "keyring.lock"), identity)
