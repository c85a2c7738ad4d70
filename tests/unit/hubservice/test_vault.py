"""The hub service's vault on real files: encrypted at rest, refused without a key, a lost key
means signing in again (never a crash), keys rotate, writes are whole."""

from __future__ import annotations

import json
import secrets
import sqlite3
import stat
import threading

import pytest

from ts_notebook.hubservice.vault import KEY_VAR, Vault, VaultError


def key() -> str:
    return secrets.token_hex(32)


RECORD = json.dumps({"refresh_token": "rt-" + "x" * 40, "access_token": "at-" + "y" * 40, "expires_at": 1.0})


@pytest.fixture
def where(tmp_path):
    return tmp_path / "service" / "vault.sqlite"


def test_records_are_encrypted_at_rest_and_read_back(where):
    vault = Vault(where, key())
    vault.put("alice", RECORD)

    assert vault.get("alice") == RECORD and vault.get("bob") is None and vault.users() == ["alice"]
    vault.close()
    on_disk = b"".join(p.read_bytes() for p in where.parent.iterdir())
    assert b"rt-xxxx" not in on_disk and b"at-yyyy" not in on_disk and b"alice" in on_disk
    assert stat.S_IMODE(where.stat().st_mode) == 0o600 and stat.S_IMODE(where.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "value, says", [("", "Set TS_NOTEBOOK_CRYPT_KEY"), ("short", "not 32 bytes"), ("g" * 64, "not 32 bytes")]
)
def test_no_key_or_a_bad_one_refuses_to_open_with_what_to_do(where, value, says):
    with pytest.raises(VaultError, match=says) as caught:
        Vault.from_environ(where, {KEY_VAR: value} if value else {})
    assert "openssl rand -hex 32" in str(caught.value)
    assert not where.exists()


def test_a_lost_key_means_signing_in_again_never_a_crash(where, caplog):
    Vault(where, key()).put("alice", RECORD)

    other = Vault(where, key())  # the key was changed
    assert other.get("alice") is None and other.get("alice") is None
    assert "alice" in other.unreadable and sum("opens with no key" in r.message for r in caplog.records) == 1
    other.put("alice", "new")  # the next sign-in replaces it
    assert other.get("alice") == "new" and "alice" not in other.unreadable


def test_keys_rotate_old_records_stay_readable_then_move_to_the_new_key(where):
    old, new = key(), key()
    Vault(where, old).put("alice", RECORD)

    both = Vault(where, f"{new};{old}")
    assert both.get("alice") == RECORD
    assert both.rotate() == 1
    assert Vault(where, new).get("alice") == RECORD  # the old key is no longer needed


def test_many_threads_write_whole_records(where):
    vault = Vault(where, key())

    def write(n: int) -> None:
        for i in range(50):
            vault.put(f"user{n}", json.dumps({"refresh_token": f"{n}-{i}", "filler": "z" * 2000}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [json.loads(vault.get(f"user{n}"))["refresh_token"] for n in range(8)] == [f"{n}-49" for n in range(8)]
    vault.delete("user0")
    assert vault.get("user0") is None and len(vault.users()) == 7


def test_a_record_copied_into_another_users_row_opens_as_nobodys(where):
    # Someone who can write the file but lacks the key (a backup, a shared volume) moves
    # alice's sealed record into bob's row.
    vault = Vault(where, key())
    vault.put("alice", RECORD)
    vault.put("bob", json.dumps({"refresh_token": "bobs"}))
    db = sqlite3.connect(where)
    db.execute("UPDATE signins SET sealed = (SELECT sealed FROM signins WHERE user = 'alice') WHERE user = 'bob'")
    db.commit()
    db.close()

    assert vault.get("bob") is None and "bob" in vault.unreadable
    assert vault.get("alice") == RECORD


def test_a_vault_file_made_beforehand_with_loose_permissions_is_made_private(where):
    where.parent.mkdir(parents=True)
    where.touch(mode=0o644)
    where.chmod(0o644)

    Vault(where, key()).put("alice", RECORD)

    assert stat.S_IMODE(where.stat().st_mode) == 0o600
