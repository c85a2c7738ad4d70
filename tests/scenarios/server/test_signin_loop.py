"""The whole loop in a real Jupyter server: %ts_login -> provider -> callback -> broker ->
kernels -> ts.session, with real kernels and the emulator as the provider.
"""

from __future__ import annotations

import asyncio
import os
import stat

import pytest
import requests

from ts_notebook.emulator import Emulator
from ts_notebook.protocol import ENV_VAR

from ...conftest import CLIENT_ID
from ...parts.browser import new_browser
from ...parts.kernels import new_kernel
from ...parts.signin import sign_in

ACCOUNTS = 'r = ts.session.get("brokerage/accounts"); print(r.status_code, r.json()["Accounts"][0]["AccountID"])'


def assert_no_secrets(text: str, emulator: Emulator) -> None:
    leaked = [s for s in emulator.issued_secrets() if s and s in text]
    assert not leaked, "a token, code, verifier or secret leaked"


async def test_full_loop_ends_in_an_api_call_from_the_kernel(server, kernels, emulator, server_log):
    k = await new_kernel(server, kernels)
    _, page = await sign_in(server, kernel=k)

    assert page.status_code == 200
    assert "Signed in to TradeStation as analyst" in page.text
    await k.wait_for_widget(r"Signed in as analyst · token valid until \d\d:\d\d")
    out = await k.run(ACCOUNTS)
    assert out.error is None and out.stdout.split() == ["200", "11111111"], out
    assert emulator.api_calls[-1]["status"] == 200

    status = await k.run("print(ts.status())")
    assert "Signed in to TradeStation as analyst" in status.stdout and "ReadAccount" in status.stdout
    magic = await k.run("%ts_status")
    assert "Signed in to TradeStation as analyst" in magic.data[-1]["text/plain"]
    assert "Signed in to TradeStation as analyst" in magic.data[-1]["text/html"]
    # Nothing secret reached the notebook (outputs, widget state) or the server log.
    assert_no_secrets(k.transcript(), emulator)
    assert "GET" in server_log.text and "ts_notebook/callback" in server_log.text
    assert_no_secrets(server_log.text, emulator)


async def test_a_kernel_started_later_is_signed_in_without_a_new_login(server, kernels, emulator):
    await sign_in(server, kernel=await new_kernel(server, kernels))
    later = await new_kernel(server, kernels)

    out = await later.run("import ts_notebook as ts\n" + ACCOUNTS)

    assert out.stdout.split() == ["200", "11111111"], out
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code"]


async def test_a_token_that_expires_during_a_long_cell_is_renewed_inside_it(server, kernels, emulator):
    emulator.access_token_lifetime = 3
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    before = len(emulator.api_calls)

    out = await k.run(
        "import time\ncodes = []\nend = time.time() + 8\n"
        "while time.time() < end:\n"
        "    codes.append(ts.session.get('brokerage/accounts').status_code)\n"
        "    time.sleep(0.2)\n"
        "print(set(codes), len(codes))",
        timeout=60,
    )

    assert out.error is None and out.stdout.startswith("{200}"), out
    calls = emulator.api_calls[before:]
    assert all(c["status"] == 200 for c in calls)
    assert len({c["token_id"] for c in calls}) >= 2  # 8 s of 3-second tokens: renewed in the cell
    assert sum(g["grant_type"] == "refresh_token" for g in emulator.grants) >= 2


async def test_sign_out_in_one_kernel_reaches_the_others(server, kernels, emulator):
    a = await new_kernel(server, kernels)
    await sign_in(server, kernel=a)
    b = await new_kernel(server, kernels)
    assert (await b.run("import ts_notebook as ts\n" + ACCOUNTS)).stdout.split()[0] == "200"

    out = await a.run("%ts_logout")
    assert "Signed out of TradeStation (the sign-in was revoked)" in out.stdout, out
    # b learns of it by push, without making a request.
    probe = "from ts_notebook.kernel import api; print(api.source().snapshot.signed_in)"
    for _ in range(40):
        if (await b.run(probe)).stdout.strip() == "False":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the sign-out never reached the other kernel")
    calls = len(emulator.api_calls)
    refused = await b.run(ACCOUNTS)

    assert refused.error and refused.error.startswith("NotSignedIn") and "%ts_login" in refused.error
    assert len(emulator.api_calls) == calls  # refused locally: no request with a dead token
    assert server.ext.broker.tokens is None


async def test_deny_shows_the_providers_error_in_the_widget(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    _, page = await sign_in(server, decision="deny", kernel=k)

    assert page.status_code == 400 and "access_denied" in page.text
    await k.wait_for_widget(r"access_denied .*User did not authorize")
    assert server.ext.broker.tokens is None
    assert emulator.grants == []


async def test_a_replayed_callback_is_refused_and_changes_nothing(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    browser, page = await sign_in(server, kernel=k)
    callback = next(u for u in browser.visited if "ts_notebook/callback" in u)
    tokens = server.ext.broker.tokens

    replay = await asyncio.to_thread(browser.get, callback)

    assert replay.status_code == 400 and "unknown to this Jupyter server" in replay.text
    assert server.ext.broker.tokens is tokens
    assert len(emulator.grants) == 1


@pytest.mark.parametrize("case", ["unknown", "expired", "other-browser", "missing"])
async def test_a_callback_that_is_not_this_browsers_live_login_is_refused(server, kernels, emulator, case):
    k = await new_kernel(server, kernels)
    await k.run("%load_ext ts_notebook\n%ts_login")
    browser = await new_browser(server)
    page = await asyncio.to_thread(browser.get, k.login_link())  # the provider's sign-in page
    state = next(v for v in page.url.split("&") if v.startswith("state=")).split("=", 1)[1]
    query = {"unknown": "code=abc&state=not-a-state", "missing": "code=abc"}.get(case, f"code=abc&state={state}")
    if case == "other-browser":
        browser = await new_browser(server)  # signed in to Jupyter, but did not start this login
    if case == "expired":
        real = server.ext.broker.clock
        server.ext.broker.clock = lambda: real() + 601

    r = await asyncio.to_thread(browser.get, f"ts_notebook/callback?{query}")

    expected = {
        "unknown": "unknown to this Jupyter server",
        "missing": "unknown to this Jupyter server",
        "expired": "expired",
        "other-browser": "another browser",
    }[case]
    assert r.status_code == 400 and expected in r.text
    assert server.ext.broker.tokens is None
    assert emulator.grants == []


async def test_the_bearer_token_goes_only_to_the_api_origins(server, kernels, emulator, other_host):
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    echo = f"{other_host.url}/v3/echo"
    refusing = f"{other_host.url}/v3/brokerage/accounts"  # answers 401 to anyone without its token

    out = await k.run(
        "import requests\n"
        f"print(ts.session.get({echo!r}).json()['authorization'])\n"
        f"print(ts.session.get('redirect', params={{'to': {echo!r}}}).json()['authorization'])\n"
        f"print(requests.get({echo!r}, auth=ts.auth, timeout=10).json()['authorization'])\n"
        f"print(ts.session.get('redirect', params={{'to': {refusing!r}}}).status_code)\n"
        f"print(requests.get(f'{emulator.url}/v3/redirect?to={refusing}', auth=ts.auth, timeout=10).status_code)\n"
        "print(ts.session.get('echo').json()['authorization'])"
    )

    assert out.stdout.split() == ["False", "False", "False", "401", "401", "True"], out
    assert not any(r["authorization"] for r in other_host.requests_seen)


async def test_many_threads_refused_at_once_cause_one_refresh(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    await k.run(ACCOUNTS)
    emulator.revoke_access_tokens()

    out = await k.run(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    codes = list(pool.map(lambda _: ts.session.get('brokerage/accounts').status_code, range(8)))\n"
        "print(codes)"
    )

    assert out.stdout.strip() == str([200] * 8), out
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code", "refresh_token"]


async def test_sim_session_uses_the_simulator(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)

    out = await k.run('print(ts.sim.get("brokerage/accounts").json()["Accounts"][0]["AccountID"])')

    assert out.stdout.strip().startswith("SIM"), out


async def test_a_second_login_while_signed_in_shows_the_state_and_signs_out(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    refresh_token = server.ext.broker.tokens.refresh_token

    again = await k.run("%ts_login")
    assert again.error is None and again.data, again
    assert k.widget_texts()[-1].startswith("Signed in as analyst")
    shown = len(k.widget_texts())
    k.click(k.buttons("Sign out")[-1])  # what the frontend sends when the button is clicked

    await k.wait_for_widget(r"^Not signed in", since=shown)
    assert server.ext.broker.tokens is None
    token_url = f"{emulator.url}/oauth/token"
    reuse = await asyncio.to_thread(
        requests.post,
        token_url,
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": server.ext.broker.settings.client_secret,
        },
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"  # revoked


async def test_the_runtime_file_is_private_and_removed_on_stop(server):
    path = os.environ[ENV_VAR]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path == str(server.ext.runtime_file)
    await server.ext.stop_extension()
    assert not os.path.exists(path) and ENV_VAR not in os.environ
