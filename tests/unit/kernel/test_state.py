"""What %ts_status prints, from a snapshot: no token, where the sign-in is kept, what to do."""

from __future__ import annotations

import threading
import time

from ts_notebook.kernel.state import Status, wait_interruptibly
from ts_notebook.protocol import Snapshot

BASE = dict(
    version=1,
    api_url="https://api.example/v3",
    sim_api_url="https://sim.example/v3",
    env="live",
    api_origins=("https://api.example:443",),
)


def test_signed_in_names_the_user_scopes_and_where_it_is_kept_but_no_token():
    snap = Snapshot(
        signed_in=True,
        access_token="SECRET-TOKEN",
        expires_at=time.time() + 600,
        scopes=("openid",),
        user={"name": "Ann"},
        kept="Sign-in kept across restarts in the file /x.",
        **BASE,
    )
    text = str(Status.of(snap))
    assert text.startswith("Signed in to TradeStation as Ann (live: https://api.example/v3); scopes: openid;")
    assert text.endswith("\nSign-in kept across restarts in the file /x.")
    assert "SECRET-TOKEN" not in text + Status.of(snap)._repr_html_()


def test_signed_out_says_why_and_what_to_do():
    out = Snapshot(signed_in=False, **BASE)
    assert str(Status.of(out)) == "Not signed in to TradeStation. Run %ts_login to sign in."
    gone = Snapshot(signed_in=False, error="The sign-in ended. Run %ts_login.", **BASE)
    assert str(Status.of(gone)) == "Not signed in to TradeStation. The sign-in ended. Run %ts_login."


def test_a_wait_ends_when_the_event_is_set_or_the_time_is_up():
    event = threading.Event()
    assert wait_interruptibly(event, 0.3) is False
    threading.Timer(0.1, event.set).start()
    assert wait_interruptibly(event, 10) is True
