"""The sign-in store on its own: real files in a private folder, the keyring package through its
own backend API (no OS keyring daemon here), renewal under the lock, and what bad stores get."""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import replace

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from ts_notebook.config import Settings
from ts_notebook.errors import ConfigError, OAuthError
from ts_notebook.store import FileBackend, Identity, Store, open_store
from ts_notebook.store import KeyringBackend as KeyringStore
from ts_notebook.tokens import TokenSet

NOW = 1_000_000.0


def tokens(n: int, refresh: str = "r1", now: float = NOW, lifetime: float = 1200) -> TokenSet:
    return TokenSet.from_response(
        {"access_token": f"a{n}", "expires_in": lifetime, "refresh_token": refresh, "scope": "openid offline_access"},
        claims={"name": "Ann"},
        now=now,
    )


def settings(**explicit: str) -> Settings:
    return Settings.load(environ={}, **{"client_id": "key", "signin_url": "https://signin.example.com", **explicit})


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "ts_notebook"


@pytest.fixture
def memory(data_dir) -> Store:
    return open_store(settings(token_store="file"))


def test_a_sign_in_is_kept_in_a_private_file_and_found_by_the_next_run(memory, data_dir):
    memory.remember(tokens(1))

    path = data_dir / "signin.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    record = json.loads(path.read_text())
    assert record["client_id"] == "key" and record["issuer"] == "https://signin.example.com"
    assert "client_secret" not in path.read_text()
    again, notice = open_store(settings(token_store="file")).restore()
    assert notice is None and again.refresh_token == "r1" and again.access_token == "a1"
    assert again.display_name == "Ann" and again.scopes == ("openid", "offline_access")
    assert "Sign-in kept across restarts in the file" in memory.kept


def test_the_client_secret_is_never_kept(data_dir):
    memory = open_store(settings(token_store="file", client_secret="the-secret-value"))
    memory.remember(tokens(1))
    assert "the-secret-value" not in (data_dir / "signin.json").read_text()


@pytest.mark.parametrize("which, mode", [("file", 0o644), ("file", 0o660), ("folder", 0o755)])
def test_a_store_others_can_read_is_refused_as_ssh_refuses_a_key(memory, data_dir, which, mode):
    memory.remember(tokens(1))
    (data_dir / "signin.json" if which == "file" else data_dir).chmod(mode)

    found, notice = open_store(settings(token_store="file")).restore()

    assert found is None
    assert "can be read by other users" in notice and f"chmod {'600' if which == 'file' else '700'}" in notice


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_store_owned_by_someone_else_is_refused(memory, data_dir):
    memory.remember(tokens(1))
    os.chown(data_dir / "signin.json", 65534, 65534)

    found, notice = open_store(settings(token_store="file")).restore()

    assert found is None and "belongs to another user (uid 65534)" in notice


def test_a_refused_store_is_left_alone_and_renewal_still_works(memory, data_dir):
    memory.remember(tokens(1))
    path = data_dir / "signin.json"
    path.chmod(0o644)
    before = path.read_text()

    renewed, fetched = memory.renew(tokens(1), lambda t: tokens(2, refresh="r2"), now=lambda: NOW)

    assert fetched and renewed.access_token == "a2"
    assert path.read_text() == before  # not overwritten behind the user's back
    assert "not kept across restarts: The sign-in store" in memory.kept


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": 1, "issuer": "https://signin.example.com"', "[]", '{"format": 99}', ""]
)
def test_a_damaged_store_is_one_line_and_signed_out(memory, data_dir, content):
    memory.remember(tokens(1))
    (data_dir / "signin.json").write_text(content)

    found, notice = open_store(settings(token_store="file")).restore()

    assert found is None
    assert "\n" not in notice and "unreadable" in notice and "Run %ts_login" in notice


def test_a_damaged_store_is_replaced_by_the_next_sign_in(memory, data_dir):
    (data_dir.mkdir(mode=0o700, parents=True), (data_dir / "signin.json").write_text("{trunc"))
    (data_dir / "signin.json").chmod(0o600)
    memory.remember(tokens(1))
    assert open_store(settings(token_store="file")).restore()[0].access_token == "a1"


@pytest.mark.parametrize(
    "other, says",
    [
        ({"signin_url": "https://other.example.com"}, "another sign-in service"),
        ({"client_id": "other-key"}, "another API key"),
        ({"scopes": "openid profile offline_access MarketData ReadAccount Trade"}, "fewer scopes than TS_SCOPES"),
    ],
)
def test_a_sign_in_kept_for_another_issuer_key_or_scopes_is_not_used(memory, other, says):
    memory.remember(tokens(1))

    found, notice = open_store(settings(token_store="file", **other)).restore()

    assert found is None and says in notice and "was not used" in notice


def test_a_crash_while_writing_leaves_the_previous_sign_in_whole(memory, data_dir, monkeypatch):
    memory.remember(tokens(1))

    def crash(*args):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        memory.remember(tokens(2, refresh="r2"))

    assert open_store(settings(token_store="file")).restore()[0].refresh_token == "r1"
    assert [p.name for p in data_dir.iterdir() if p.name.endswith(".tmp")] == []
    assert "writing the file" in memory.kept


def test_a_renewal_takes_up_tokens_another_process_kept_instead_of_spending_its_own(memory):
    ours, theirs = tokens(1), tokens(2, refresh="r2", now=NOW + 10)
    memory.remember(theirs)  # another process renewed r1 and kept r2
    calls = []

    renewed, fetched = memory.renew(ours, lambda t: calls.append(t) or tokens(3, refresh="r3"), now=lambda: NOW)

    assert (renewed.access_token, fetched, calls) == ("a2", False, [])


def test_a_renewal_of_kept_tokens_that_are_due_spends_the_kept_refresh_token(memory):
    memory.remember(tokens(2, refresh="r2", now=NOW - 1100))  # newer than ours, and due by now
    spent = []

    renewed, fetched = memory.renew(
        tokens(1, now=NOW - 1150), lambda t: spent.append(t.refresh_token) or tokens(3, refresh="r3"), now=lambda: NOW
    )

    assert spent == ["r2"] and fetched and renewed.refresh_token == "r3"
    assert open_store(settings(token_store="file")).restore()[0].refresh_token == "r3"


def test_a_refresh_token_refused_for_good_is_forgotten(memory):
    memory.remember(tokens(1))

    def refused(t):
        raise OAuthError("invalid_grant", "Unknown or invalid refresh token.")

    with pytest.raises(OAuthError):
        memory.renew(tokens(1), refused, now=lambda: NOW)
    assert open_store(settings(token_store="file")).restore() == (None, None)


def test_a_passing_failure_keeps_the_sign_in(memory):
    memory.remember(tokens(1))

    def down(t):
        raise OAuthError("network_error", "timed out")

    with pytest.raises(OAuthError):
        memory.renew(tokens(1), down, now=lambda: NOW)
    assert open_store(settings(token_store="file")).restore()[0].refresh_token == "r1"


def test_forget_spares_a_newer_sign_in(memory):
    memory.remember(tokens(2, refresh="r2"))
    memory.forget("r1")
    assert open_store(settings(token_store="file")).restore()[0].refresh_token == "r2"
    memory.forget()
    assert open_store(settings(token_store="file")).restore() == (None, None)


def test_threads_of_one_process_renew_one_at_a_time(memory):
    memory.remember(tokens(1))
    inside, most = [0], [0]
    lock = threading.Lock()

    def refresh(t):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.05)
        with lock:
            inside[0] -= 1
        return tokens(int(t.access_token[1:]) + 1, refresh=f"r{int(t.access_token[1:]) + 1}", now=NOW - 1100)

    threads = [
        threading.Thread(target=memory.renew, args=(tokens(1), refresh), kwargs={"now": lambda: NOW}) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


class MemoryKeyring(KeyringBackend):
    """A secure-ranked backend that keeps entries in a dict, through keyring's backend API."""

    priority = 5

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        from keyring.errors import PasswordDeleteError

        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("not there")


@pytest.fixture
def os_keyring(data_dir):
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_the_default_is_a_secure_keyring_when_there_is_one(os_keyring):
    memory = open_store(settings())

    assert isinstance(memory.backend, KeyringStore)
    memory.remember(tokens(1))
    assert json.loads(os_keyring.entries[("ts_notebook", "sign-in")])["refresh_token"] == "r1"
    assert open_store(settings()).restore()[0].access_token == "a1"
    assert "system keyring" in memory.kept
    memory.forget()
    assert os_keyring.entries == {}
    memory.forget()  # nothing there: no error


@pytest.mark.parametrize(
    "choice, says",
    [(None, "no secure system keyring here"), ("keyring", "TS_TOKEN_STORE=keyring, but no secure system keyring")],
)
def test_without_a_secure_keyring_nothing_is_kept_and_status_says_how_to_keep_it(data_dir, choice, says):
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        memory = open_store(settings(**({"token_store": choice} if choice else {})))
    finally:
        keyring.set_keyring(previous)

    assert memory.backend is None
    memory.remember(tokens(1))
    assert memory.restore() == (None, None)
    assert says in memory.kept and "TS_TOKEN_STORE=file" in memory.kept


def test_none_keeps_nothing(os_keyring):
    memory = open_store(settings(token_store="none"))
    memory.remember(tokens(1))
    assert os_keyring.entries == {} and memory.backend is None


def test_an_unknown_store_is_a_clear_setting_error():
    with pytest.raises(ConfigError, match="TS_TOKEN_STORE must be one of keyring, file, none, not 'disk'"):
        settings(token_store="disk")


def test_a_sign_in_kept_with_more_scopes_than_ts_scopes_is_used(memory):
    wider = ("openid", "profile", "offline_access", "MarketData", "ReadAccount", "Trade")
    memory.remember(replace(tokens(1), requested=wider))
    found, notice = open_store(settings(token_store="file")).restore()
    assert notice is None and set(found.requested) == set(wider)


def test_the_identity_ignores_the_order_of_scopes():
    a = Identity.of(settings(scopes="ReadAccount MarketData"))
    assert (
        a.mismatch(
            {
                "issuer": "https://signin.example.com/",
                "client_id": "key",
                "requested": ["MarketData", "ReadAccount", "openid"],
            }
        )
        is None
    )


def test_file_backend_refuses_a_symlinked_store(data_dir, tmp_path):
    backend = FileBackend(data_dir / "signin.json")
    backend.write("{}")
    (data_dir / "signin.json").unlink()
    (tmp_path / "elsewhere.json").write_text("{}")
    (data_dir / "signin.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(Exception, match="Cannot read the sign-in store"):
        backend.read()


# -- attacks and failures an attacker's review found -------------------------------------------


def spending(log: list[str]):
    """A provider with rotating refresh tokens: each is good once; reuse is refused."""
    spent: set[str] = set()

    def refresh(t: TokenSet) -> TokenSet:
        log.append(t.refresh_token)
        if t.refresh_token in spent:
            raise OAuthError("invalid_grant", "refresh token reused")
        spent.add(t.refresh_token)
        n = len(spent) + 1
        return tokens(n, refresh=f"r{n}", now=NOW + 100 * n)

    return refresh


def test_a_store_left_behind_by_a_refused_write_is_never_taken_for_newer(memory, data_dir):
    memory.remember(tokens(1, now=NOW))
    path = data_dir / "signin.json"
    path.chmod(0o644)  # a copy restored with the wrong mode: refused, so nothing is written
    sent: list[str] = []
    provider = spending(sent)
    ours, _ = memory.renew(tokens(1, now=NOW), provider, now=lambda: NOW + 1100)
    path.chmod(0o600)  # the user runs the chmod the message gave

    ours, fetched = memory.renew(ours, provider, now=lambda: NOW + 100 * 2 + 1100)

    assert sent == ["r1", "r2"] and fetched  # r1, spent, is never sent again
    assert open_store(settings(token_store="file")).restore()[0].refresh_token == "r3"


def test_a_sign_in_whose_keeping_failed_renews_with_its_own_refresh_token(memory, monkeypatch):
    memory.remember(tokens(1, now=NOW))  # the old sign-in
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        memory.remember(tokens(2, refresh="r2", now=NOW + 50))  # the new one could not be kept
    sent: list[str] = []

    renewed, _ = memory.renew(tokens(2, refresh="r2", now=NOW + 50), spending(sent), now=lambda: NOW + 50 + 1100)

    assert sent == ["r2"] and renewed.refresh_token != "r1"


def test_a_lock_the_system_cannot_give_is_reported_and_renewal_goes_on(memory, monkeypatch):
    import filelock

    def no_locks(self, *args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_locks)
    memory.remember(tokens(1))  # no exception: the sign-in itself is good

    renewed, fetched = memory.renew(tokens(1), lambda t: tokens(2, refresh="r2"), now=lambda: NOW)

    assert fetched and renewed.access_token == "a2" and "Function not implemented" in memory.kept


def test_a_keyring_chain_that_would_write_to_plaintext_is_not_secure(data_dir):
    from keyring.backends import chainer

    class ReadOnlyHelper(MemoryKeyring):
        priority = 9

        def set_password(self, service, username, password):
            raise NotImplementedError

    class PlainFile(MemoryKeyring):
        priority = 0.5

    helper, plain = ReadOnlyHelper(), PlainFile()

    class Chain(chainer.ChainerBackend):
        backends = [helper, plain]  # as keyring orders them, by priority

    previous = keyring.get_keyring()
    chain = Chain()
    keyring.set_keyring(chain)
    try:
        memory = open_store(settings())
        memory.remember(tokens(1))
    finally:
        keyring.set_keyring(previous)
    assert plain.entries == {}  # the refresh token never reached the plaintext backend


@pytest.mark.parametrize(
    "field, raw", [("expires_at", "1" + "0" * 400), ("expires_at", "NaN"), ("lifetime", "Infinity")]
)
def test_a_record_with_absurd_numbers_is_damaged_and_renewal_repairs_it(memory, data_dir, field, raw):
    memory.remember(tokens(1))
    path = data_dir / "signin.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), field: "HERE"}).replace('"HERE"', raw))

    found, notice = open_store(settings(token_store="file")).restore()
    renewed, fetched = memory.renew(tokens(1), lambda t: tokens(2, refresh="r2"), now=lambda: NOW)

    assert found is None and "unreadable" in notice
    assert fetched and open_store(settings(token_store="file")).restore()[0].access_token == "a2"


def test_a_temp_file_left_by_a_crash_is_removed_by_the_next_write(memory, data_dir):
    memory.remember(tokens(1))
    left = data_dir / ".signin-crashed.tmp"
    left.write_text("a secret from a writer killed mid-write")
    memory.remember(tokens(2, refresh="r2"))
    assert not left.exists()
    left.write_text("again")
    memory.forget()
    assert not left.exists()
