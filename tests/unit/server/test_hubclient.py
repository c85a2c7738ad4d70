"""A hub user's server and the hub service, from the server's side, against a real HTTP
server on 127.0.0.1 that answers as the service would (or would not): replies that cross on the
wire, a restarted service, a service that is down, and its refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from tornado import web

from ts_notebook import longpoll
from ts_notebook.errors import NotSignedIn, OAuthError
from ts_notebook.launch import free_port
from ts_notebook.pending import PendingLogin
from ts_notebook.server.hubclient import ServiceSignIn
from ts_notebook.service_protocol import service_state
from ts_notebook.tokens import TokenSet

from ...parts.waiting import eventually


def state(version: int, token: str | None, error: str | None = None) -> dict:
    tokens = TokenSet(access_token=token, expires_at=time.time() + 60, lifetime=60) if token else None
    return service_state(version, tokens, error)


class Canned(web.RequestHandler):
    """Answers every call with the reply set for its method, recording what it was sent."""

    headers: dict = {}  # sent with every reply

    def initialize(self, replies: dict, seen: list) -> None:
        self.replies, self.seen = replies, seen

    async def handle(self) -> None:
        self.seen.append((self.request.method, self.request.uri, self.request.headers.get("Authorization")))
        if self.request.method == "GET":
            await asyncio.sleep(0.1)  # a long-poll with nothing new, cut short
        status, body = self.replies[self.request.method]
        self.set_status(status)
        for name, value in self.headers.items():
            self.set_header(name, value)
        self.finish(body if isinstance(body, str) else json.dumps(body))

    get = post = delete = handle


@pytest.fixture
def canned():
    """A fake service on a port: (url, replies, seen, start, stop)."""
    port, replies, seen, servers = free_port(), {}, [], []

    def start() -> None:
        app = web.Application([(r"/services/ts-notebook/.*", Canned, {"replies": replies, "seen": seen})])
        servers.append(app.listen(port, address="127.0.0.1"))

    def stop() -> None:
        while servers:
            server = servers.pop()
            server.stop()
            with contextlib.suppress(RuntimeError):  # no loop left at teardown: nothing open
                asyncio.get_running_loop().create_task(server.close_all_connections())

    yield f"http://127.0.0.1:{port}/services/ts-notebook/", replies, seen, start, stop
    stop()


@pytest.fixture
def holder(canned):
    made = []

    def make(on_change=lambda: None) -> ServiceSignIn:
        made.append(ServiceSignIn(canned[0], "server-token", on_change))
        return made[-1]

    yield make
    for h in made:
        h.close()


async def test_an_older_state_is_not_taken_up_unless_a_restarted_service_sent_it(holder):
    told = []
    sc = holder(lambda: told.append(sc.tokens.access_token if sc.tokens else None))

    sc._apply(state(5, "B"))
    sc._apply(state(4, "A"))  # a reply that crossed a newer one on the wire
    sc._apply(state(5, "B"))
    sc._apply({"version": "five", "signed_in": True})  # unreadable: ignored, no crash
    assert told == ["B"] and sc.tokens.access_token == "B"

    sc._apply(state(3, "C"), resync=True)  # the long-poll: the service restarted, its clock behind
    assert told == ["B", "C"] and sc.tokens.refresh_token is None


async def test_a_service_that_is_down_is_said_so_and_a_sign_in_says_what_to_do(holder, monkeypatch):
    monkeypatch.setattr(longpoll, "RETRY_FIRST", 0.05)
    sc = holder()
    pending = PendingLogin(state="s", verifier="v", nonce="n", redirect_uri="http://h/cb", authorize_url="")

    await sc.restore()
    assert "did not answer" in sc.error and sc.tokens is None  # every kernel is told at once
    with pytest.raises(OAuthError) as failed:
        await sc.complete(pending, "code")

    assert failed.value.error == "hub_service_unavailable" and "try again in a minute" in str(failed.value)


async def test_a_renewal_waits_out_a_restarting_service(holder, canned):
    url, replies, seen, start, _ = canned
    replies["POST"] = (200, state(10, "renewed"))
    sc = holder()

    renewal = asyncio.ensure_future(sc.refresh("stale"))
    await asyncio.sleep(1.5)  # the service is down meanwhile ...
    assert not renewal.done()
    start()  # ... and back
    await asyncio.wait_for(renewal, 10)

    assert sc.tokens.access_token == "renewed"
    assert seen == [("POST", "/services/ts-notebook/api/refresh", "token server-token")]


async def test_kernels_are_told_while_the_service_cannot_be_followed_and_when_it_can_again(holder, canned, monkeypatch):
    monkeypatch.setattr(longpoll, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(longpoll, "RETRY_MOST", 0.2)
    monkeypatch.setattr(longpoll, "OUTAGE_WAIT", 0.5)
    url, replies, _, start, stop = canned
    replies["GET"] = (200, state(7, "current"))
    sc = holder()

    await sc.restore()  # down at the start
    assert "did not answer" in sc.error
    start()
    await eventually(lambda: sc.error is None and sc.tokens is not None, 5, "the service followed again")
    stop()  # down for longer than a restart
    await eventually(lambda: sc.error is not None and "did not answer" in sc.error, 5, "the outage said")
    assert sc.tokens.access_token == "current"  # the token it had lives out its time


async def test_the_watch_follows_a_restarted_service_again_at_once_however_long_it_was_down(holder, canned):
    url, replies, seen, start, stop = canned
    replies["GET"] = (200, state(7, "before"))
    start()
    sc = holder()
    await sc.restore()
    await eventually(lambda: len(seen) >= 2, 5, "the watch long-polling")

    stop()
    await asyncio.sleep(7.5)  # a slow restart: a doubling backoff would now sleep 8 s more
    replies["GET"] = (200, state(9, None))  # meanwhile signed out in another of the user's servers
    start()

    await eventually(lambda: sc.tokens is None, 3, "this server following the restarted service")
    assert sc.error is None  # a restart is not an outage to tell kernels about


@pytest.mark.parametrize(
    ("status", "body", "raised", "says"),
    [
        (409, {"error": "not_signed_in", "message": "Not signed in. Run %ts_login"}, NotSignedIn, "Run %ts_login"),
        (403, {"error": "no_access", "message": "This token lacks access:services"}, OAuthError, "lacks access"),
        (502, {"error": "invalid_grant", "description": "revoked"}, OAuthError, "revoked"),
        (502, "<html>Bad Gateway</html>", OAuthError, "answered 502"),
    ],
)
async def test_a_refusal_is_raised_with_its_reason(holder, canned, monkeypatch, status, body, raised, says):
    monkeypatch.setattr(longpoll, "OUTAGE_WAIT", 0.5)
    canned[1]["POST"] = (status, body)
    canned[3]()
    sc = holder()

    with pytest.raises(raised) as failed:
        await sc.refresh(None)

    assert says in str(failed.value) and sc.tokens is None


async def test_a_server_follows_the_hub_service_again_after_a_long_outage(holder, canned, monkeypatch):
    _, replies, _, start, _ = canned
    # Time compressed: the watch retries at once instead of every 10 s; the overflow in
    # the follower's wait does not depend on RETRY_MOST (it is computed before the min).
    monkeypatch.setattr(longpoll, "RETRY_MOST", 0.0)
    sc = holder()
    await sc.restore()  # the service is down

    # Down for well over 1025 long-polls (about 3 hours at the real 10 s schedule).
    deadline = time.monotonic() + 5  # thousands of refused long-polls, with no pause between
    while time.monotonic() < deadline and not sc._watching.done():
        await asyncio.sleep(0.1)
    replies["GET"] = (200, state(7, "back"))
    start()  # the service is back, with a sign-in made in another of the user's servers

    await eventually(
        lambda: sc.tokens is not None and sc.tokens.access_token == "back",
        timeout=10,
        what=(
            "following the service again"
            + (f" (the watch task ended: {sc._watching.exception()!r})" if sc._watching.done() else "")
        ),
    )


@pytest.mark.parametrize(
    ("said", "told"),
    [("network_error", "network_error"), (None, None), ("token=r3Ls", None), (12, None)],
    ids=["its-code", "revoked", "not-a-code", "not-text"],
)
async def test_a_sign_out_passes_on_why_the_services_revocation_failed_as_a_code_only(holder, canned, said, told):
    url, replies, _, start, _ = canned
    replies["DELETE"] = (200, {**state(8, None), "revoke_failure": said})
    start()

    assert await holder().logout() == told


@pytest.mark.parametrize(
    ("status", "body", "headers", "most"),
    [
        (200, None, {}, 7),  # backing off from 0.25 s, doubling
        (429, {"error": "slow_down", "message": "32 calls of yours are waiting"}, {"Retry-After": "2"}, 3),
    ],
    ids=["answered-at-once-with-nothing-new", "over-the-cap-with-retry-after"],
)
async def test_the_watch_never_asks_again_at_once_whatever_the_service_answers(
    holder, canned, status, body, headers, most
):
    url, replies, seen, start, stop = canned
    replies["GET"] = (status, body or state(7, "t"))
    Canned.headers = headers
    start()
    try:
        sc = holder()
        await sc.restore()
        await asyncio.sleep(3)
    finally:
        Canned.headers = {}
    asks = sum(method == "GET" for method, _, _ in seen)
    # Asked again at once, 0.1 s apart, it would be 30 in 3 s; backing off, a handful; waiting
    # the service's Retry-After of 2 s, the first two and one more.
    assert asks <= most, asks
