"""The pending-login table on its own: claims are single use, unexpired and bound to the
browser that started the login, and a refused claim changes nothing."""

from __future__ import annotations

import pytest

from ts_notebook.pending import PENDING_TTL, Entry, LoginRejected, PendingLogin, PendingLogins


def login(state: str, created: float = 0.0) -> PendingLogin:
    return PendingLogin(
        state=state, verifier="v", nonce="n", redirect_uri="http://localhost:1", authorize_url="", created=created
    )


@pytest.fixture
def table() -> PendingLogins:
    t = PendingLogins("this Jupyter server", limit=3)
    t.add(Entry(login("s1"), "browser-a"))
    return t


def test_a_login_is_claimed_once_by_its_browser(table):
    assert table.claim("s1", "browser-a", now=1.0).state == "s1"
    with pytest.raises(LoginRejected, match="unknown to this Jupyter server: it was already used"):
        table.claim("s1", "browser-a", now=1.0)


@pytest.mark.parametrize(
    ("state", "key", "now", "says"),
    [
        ("s1", "browser-b", 1.0, "started in another browser"),
        ("s1", None, 1.0, "started in another browser"),
        ("s2", "browser-a", 1.0, "unknown to this Jupyter server"),
        ("", "browser-a", 1.0, "unknown to this Jupyter server"),
    ],
    ids=["other-browser", "no-cookie", "unknown", "empty"],
)
def test_a_refused_claim_changes_nothing(table, state, key, now, says):
    with pytest.raises(LoginRejected, match=says):
        table.claim(state, key, now)
    assert table.live(now) and table.claim("s1", "browser-a", now).state == "s1"


def test_an_expired_login_is_refused_and_forgotten(table):
    with pytest.raises(LoginRejected, match="has expired"):
        table.claim("s1", "browser-a", now=PENDING_TTL + 1)
    with pytest.raises(LoginRejected, match="unknown"):
        table.claim("s1", "browser-a", now=1.0)


def test_a_pasted_address_needs_no_browser_key(table):
    assert table.claim("s1", None, now=1.0, bound=False).state == "s1"


def test_a_full_table_drops_the_oldest_login(table):
    for n in (2, 3, 4):
        table.add(Entry(login(f"s{n}"), "browser-a"))
    with pytest.raises(LoginRejected, match="unknown"):
        table.claim("s1", "browser-a", now=1.0)
    assert table.claim("s4", "browser-a", now=1.0).state == "s4"


def test_expiry_and_the_relay_are_read_without_changing_anything(table):
    table.add(Entry(login("s2", created=100.0), "browser-b", return_to="http://127.0.0.1:8888/cb", via_relay=True))
    assert table.relayed and table.relayed_to("s2", now=101.0) == "http://127.0.0.1:8888/cb"
    assert table.relayed_to("s1", now=101.0) is None  # not a relayed login
    assert table.has_for("browser-b") and not table.has_for("browser-c")
    assert table.expire(now=PENDING_TTL + 50) == 1  # s1 only
    assert table.live(now=PENDING_TTL + 50) and table.expire(now=PENDING_TTL + 200) == 1
    assert not table.live(now=0.0) and not table.relayed
