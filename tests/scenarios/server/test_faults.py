"""A misbehaving provider, and kernels that come and go, against a real server, real kernels
and the emulator's fault settings: the server keeps answering, renewals retry until they
work, and a sign-in that has ended for good is said once to every kernel."""

from __future__ import annotations

import asyncio
import html
import json
import re

import pytest

from ts_notebook import keeper
from ts_notebook.protocol import KEY_HEADER

from ...parts.browser import new_browser
from ...parts.fakes import fails_once
from ...parts.kernels import new_kernel
from ...parts.signin import sign_in
from ...parts.waiting import eventually
from .test_api import api
from .test_relay import start_login
from .test_signin_loop import ACCOUNTS


def refreshes(emulator, ok: bool | None = None) -> int:
    return sum(g["grant_type"] == "refresh_token" and (ok is None or g["ok"] is ok) for g in emulator.grants)


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(keeper, "RETRY_AFTER", 1.0)  # after expiry a failed renewal is retried each second


async def test_a_provider_that_goes_down_and_comes_back_is_renewed_against_again(
    server, kernels, emulator, quick_retries
):
    emulator.access_token_lifetime = 3
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    first = server.ext.broker.tokens

    emulator.stop()  # connections refused: every renewal fails with a network error
    await asyncio.sleep(4)
    assert server.ext.broker.tokens is first  # still signed in: a passing failure
    emulator.start()

    await eventually(lambda: refreshes(emulator, ok=True) >= 1, 15, "a renewal once the provider is back")
    out = await k.run(ACCOUNTS)
    assert out.stdout.split() == ["200", "11111111"], out


@pytest.mark.parametrize("fault", ["server-error", "connection-reset", "key-rotation"])
async def test_a_renewal_that_meets_a_fault_still_renews(server, emulator, fault):
    emulator.access_token_lifetime = 4
    await sign_in(server)
    first = server.ext.broker.tokens
    if fault == "server-error":
        emulator.fail_next_token_request(error="temporarily_unavailable", status=503, description="busy")
    elif fault == "connection-reset":
        emulator.reset_next_token_request()
    else:
        emulator.rotate_signing_key()  # the renewal's id_token names a key the cached JWKS lacks

    await eventually(
        lambda: server.ext.broker.tokens is not first and server.ext.broker.tokens is not None, 15, "a renewal"
    )

    assert server.ext.broker.error is None


@pytest.mark.parametrize("skew", [-180, 180], ids=["provider-3-min-behind", "provider-3-min-ahead"])
async def test_a_provider_clock_minutes_off_still_signs_in(server, emulator, skew):
    emulator.clock_skew = skew
    b = (await sign_in(server)).browser
    assert server.ext.broker.tokens.display_name == "analyst" and b


async def test_a_refresh_token_revoked_at_the_provider_tells_every_kernel_once(server, kernels, emulator):
    emulator.access_token_lifetime = 2
    a = await new_kernel(server, kernels)
    await sign_in(server, kernel=a)
    b = await new_kernel(server, kernels)
    assert (await b.run("import ts_notebook as ts\n" + ACCOUNTS)).stdout.split()[0] == "200"

    emulator.revoke_refresh_tokens()
    await eventually(lambda: server.ext.broker.tokens is None, 10, "the sign-in to end")
    ended = refreshes(emulator)  # renewals before the revocation (none, or some on a slow machine) ...
    await asyncio.sleep(3)  # a loop would have asked again by now

    assert refreshes(emulator, ok=False) == 1 and refreshes(emulator) == ended  # ... then one refused, and no more
    for k in (a, b):
        out = await k.run(ACCOUNTS)
        assert out.error and out.error.startswith("NotSignedIn") and "Run %ts_login" in out.error, out
    assert refreshes(emulator) == ended  # the kernels' refused requests asked nobody


async def test_a_slow_token_endpoint_leaves_the_server_answering(server, emulator):
    emulator.token_delay = 3.0
    b = await new_browser(server)
    page = await asyncio.to_thread(b.get, "ts_notebook/login")
    callback = asyncio.ensure_future(asyncio.to_thread(b.submit, page, "allow", username="analyst"))
    await eventually(
        lambda: len(emulator.requests_seen) and emulator.requests_seen[-1]["path"] == "/oauth/token",
        10,
        "the exchange to start",
    )

    status = await asyncio.to_thread(api, server, "GET", "status")

    assert status.status_code == 200 and not callback.done()  # answered while the exchange waits
    done = await look_again_until_done(b, await callback)  # (a waiting page, if the machine is slow)
    assert "Signed in to TradeStation as analyst" in done.text


async def test_a_kernel_restarted_mid_login_is_signed_in_when_the_login_completes(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    await k.run("%load_ext ts_notebook\n%ts_login")
    b = await new_browser(server)
    page = await asyncio.to_thread(b.get, k.login_link())

    await server.app.kernel_manager.restart_kernel(k.kernel_id)  # returns once the new kernel answers
    await k.until_heard()
    done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert "Signed in to TradeStation as analyst" in done.text
    out = await k.run("import ts_notebook as ts\n" + ACCOUNTS)
    assert out.stdout.split() == ["200", "11111111"], out


async def test_long_polls_that_disconnect_mid_wait_leave_no_watcher_behind(server):
    version = (await asyncio.to_thread(api, server, "GET", "status")).json()["version"]
    path = f"{server.app.base_url}ts_notebook/api/token?since={version}&timeout=25"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.app.port}\r\n{KEY_HEADER}: {server.ext.key}\r\n\r\n"
    ).encode()
    conns = []
    for _ in range(50):  # 50 kernels long-polling
        reader, writer = await asyncio.open_connection("127.0.0.1", server.app.port)
        writer.write(request)
        conns.append(writer)
    await eventually(lambda: len(server.ext.broker.changes._waiting) == 50, 10, "50 watchers")

    for writer in conns:  # every kernel goes away mid-wait
        writer.close()

    await eventually(lambda: len(server.ext.broker.changes._waiting) == 0, 10, "every watcher released")
    reply = await asyncio.to_thread(api, server, "POST", "logout", data=json.dumps({}))
    assert reply.status_code == 200  # a change now has nobody to wake, and the server is fine


HAMMER = """
import collections, json, threading, time
import ts_notebook as ts
codes, lock = collections.Counter(), threading.Lock()
end = time.time() + {seconds}
def work():
    while time.time() < end:
        try:
            code = ts.session.get("brokerage/accounts").status_code
        except Exception as exc:
            code = type(exc).__name__
        with lock:
            codes[code] += 1
        time.sleep({pause})
threads = [threading.Thread(target=work) for _ in range({threads})]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(codes))
"""


async def test_eight_hundred_threads_in_eight_kernels_across_an_expiry_make_one_refresh(server, kernels, emulator):
    emulator.access_token_lifetime = 12  # renewed 8 s after the sign-in, then again at 16 s
    ks = await asyncio.gather(*(new_kernel(server, kernels) for _ in range(8)))
    await asyncio.gather(*(k.run("import ts_notebook") for k in ks))
    await sign_in(server, kernel=ks[0])
    await ks[0].wait_for_widget("Signed in as analyst")

    outs = await asyncio.gather(*(k.run(HAMMER.format(seconds=11, pause=1.0, threads=100), timeout=120) for k in ks))

    counts = [json.loads(o.stdout) for o in outs]
    assert all(set(c) == {"200"} for c in counts), counts  # no failed request
    assert sum(sum(c.values()) for c in counts) >= 8 * 100 * 5
    assert refreshes(emulator) == 1  # across the expiry: one renewal, however many asked


async def test_no_unexpected_error_stops_the_renewal_timer(server, emulator, monkeypatch, quick_retries):
    # Whatever a renewal raises, even an error nobody foresaw, the timer is armed again.
    emulator.access_token_lifetime = 3
    await sign_in(server)
    broker = server.ext.broker
    refresh = fails_once(broker.client.refresh, RuntimeError("a bug nobody foresaw"))
    monkeypatch.setattr(broker.client, "refresh", refresh)
    first = broker.tokens

    await eventually(lambda: broker.tokens is not first and broker.tokens is not None, 15, "a renewal after the bug")
    assert refresh.calls >= 2


async def look_again_until_done(browser, page, timeout: float = 120):
    """Follow a waiting page's own refresh, as a browser does, until a result page comes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while page.status_code == 202:
        assert asyncio.get_running_loop().time() < deadline, "the sign-in never finished"
        again = html.unescape(re.search(r'http-equiv="refresh" content="1;url=([^"]+)"', page.text).group(1))
        await asyncio.sleep(1)
        page = await asyncio.to_thread(browser.get, again)
    return page


async def test_a_token_endpoint_that_answers_in_25_s_still_signs_in_and_the_page_says_it_is_under_way(server, emulator):
    emulator.token_delay = 25  # longer than a 20 s read timeout: every such sign-in was a 502
    b, page = await start_login(server)

    waiting = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert waiting.status_code == 202 and "the exchange is under way" in waiting.text
    done = await look_again_until_done(b, waiting)
    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text, done.text
    assert [g["ok"] for g in emulator.grants if g["grant_type"] == "authorization_code"] == [True]
    again = await asyncio.to_thread(b.get, done.url)  # the waiting page's address, used up
    assert again.status_code == 400 and "not under way here any more" in again.text
