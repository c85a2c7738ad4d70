"""The asyncio driver of the keeper (``SignIn``, the server's and the hub service's) against the
emulator and a real file store: what happens while a kept sign-in is still being read."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ts_notebook.config import Settings
from ts_notebook.errors import OAuthError
from ts_notebook.oauth import OAuthClient
from ts_notebook.signin import SignIn
from ts_notebook.store import FileBackend, Identity, Store

from ..conftest import CLIENT_ID
from ..parts.signin import REDIRECT, approve


class SlowToRead(FileBackend):
    """The file store, whose first read waits until the test lets it go (a hub service with
    many sign-ins to read, or a slow disk): the window in which the service already listens."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.reading, self.go_on = threading.Event(), threading.Event()

    def read(self) -> str | None:
        if not self.reading.is_set():
            self.reading.set()
            self.go_on.wait(30)
        return super().read()


@pytest.fixture
def kept(emulator, client_secret, tmp_path):
    """A sign-in kept in a file store by an earlier run: (settings, backend, its tokens)."""
    settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    client = OAuthClient(settings)
    pending = client.begin_login(REDIRECT)
    tokens = client.exchange(pending, approve(pending)["code"])
    backend = SlowToRead(tmp_path / "store" / "signin.json")
    Store(FileBackend(backend.path), Identity.of(settings)).remember(tokens)
    return settings, backend, tokens


@pytest.mark.parametrize("revocation", ["token", "user", "grant"])
async def test_a_sign_out_while_the_kept_sign_in_is_read_wins_and_revokes_it(kept, emulator, revocation):
    emulator.revocation = revocation
    settings, backend, tokens = kept
    client = OAuthClient(settings)
    with ThreadPoolExecutor(4) as pool:
        signin = SignIn(Store(backend, Identity.of(settings)), lambda: client, pool, lambda: None)
        restoring = asyncio.ensure_future(signin.restore())
        await asyncio.to_thread(backend.reading.wait, 10)

        signing_out = asyncio.ensure_future(signin.logout())  # reached the service as it started
        await asyncio.sleep(0.2)  # the sign-out is told to the keeper at once; its store write waits
        backend.go_on.set()
        await asyncio.gather(restoring, signing_out)

        assert signin.tokens is None
        with pytest.raises(OAuthError, match="invalid_grant"):
            await asyncio.to_thread(client.refresh, tokens)  # revoked, not only forgotten
        assert FileBackend(backend.path).read() is None  # and nothing kept to be renewed back
        signin.close()


async def test_a_sign_in_while_an_unusable_kept_sign_in_is_read_shows_no_notice_about_it(kept, emulator):
    settings, backend, _ = kept
    backend.path.write_text("{damaged")  # what the restore will find: unreadable
    client = OAuthClient(settings)
    pending = client.begin_login(REDIRECT)
    code = (await asyncio.to_thread(approve, pending))["code"]
    with ThreadPoolExecutor(4) as pool:
        signin = SignIn(Store(backend, Identity.of(settings)), lambda: client, pool, lambda: None)
        restoring = asyncio.ensure_future(signin.restore())
        await asyncio.to_thread(backend.reading.wait, 10)

        signing_in = asyncio.ensure_future(signin.complete(pending, code))  # while the store is read
        await asyncio.sleep(0.2)
        backend.go_on.set()
        await asyncio.gather(restoring, signing_in)

        # The damaged record belonged to the run before; the sign-in made since is what counts.
        assert signin.tokens is not None and signin.error is None
        signin.close()
