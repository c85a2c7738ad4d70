"""What %ts_logout says in a kernel of a Jupyter server (the server's broker signs out for
every kernel): signed out and revoked; forgotten though revoking failed, and why; or nothing
to sign out; and never what a hostile provider's refusal quotes back."""

from __future__ import annotations

import asyncio

import pytest
import requests

from ...conftest import CLIENT_ID
from ...parts.fakes import EchoingRefusal, serve_on_loopback
from ...parts.kernels import new_kernel
from ...parts.signin import sign_in


async def test_logout_says_the_sign_in_was_revoked_then_that_there_is_nothing_to_sign_out(
    server, kernels, emulator, client_secret
):
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel=kernel)
    await kernel.wait_for_widget(r"Signed in as analyst")
    refresh_token = server.ext.broker.tokens.refresh_token

    first = await kernel.run("%ts_logout")
    again = await kernel.run("%ts_logout")

    assert first.stdout == "Signed out of TradeStation (the sign-in was revoked).\n", first
    assert again.stdout == "Not signed in to TradeStation; nothing to sign out.\n", again
    refused = await asyncio.to_thread(
        requests.post,
        f"{emulator.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        timeout=10,
    )
    assert refused.json()["error"] == "invalid_grant"  # revoked at the provider, not just forgotten


async def test_a_failed_revocation_is_said_with_its_reason(server, kernels, emulator):
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel=kernel)
    await kernel.wait_for_widget(r"Signed in as analyst")

    emulator.stop()  # the sign-in service cannot be reached to revoke
    result = await kernel.run("%ts_logout")

    assert result.stdout == (
        "Signed out of TradeStation: the sign-in is forgotten here, but revoking it at TradeStation failed "
        "(network_error), so it may stay valid there.\n"
    ), result
    assert server.ext.broker.tokens is None


@pytest.fixture
def echoing_revoke(emulator):
    """The emulator's discovery names the echoing endpoint for revocation (set before the
    server starts, so its first discovery already has it)."""
    httpd = serve_on_loopback(EchoingRefusal)
    emulator.discovery_overrides = {"revocation_endpoint": f"http://127.0.0.1:{httpd.server_port}/oauth/revoke"}
    yield
    httpd.shutdown()


async def test_a_providers_error_description_never_puts_the_refresh_token_or_secret_in_the_logout_output(
    echoing_revoke,
    server,
    kernels,
    client_secret,
):
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel=kernel)
    await kernel.wait_for_widget(r"Signed in as analyst")
    refresh_token = server.ext.broker.tokens.refresh_token

    result = await kernel.run("%ts_logout")

    assert "revoking it at TradeStation failed" in result.stdout, result  # the hostile reply was used
    # What %ts_logout printed is a notebook output: it is saved with the notebook (the
    # quickstart's last cell is %ts_logout). The refresh token there is still valid, since
    # its revocation is exactly what failed.
    assert refresh_token not in result.stdout, result.stdout
    assert client_secret not in result.stdout, result.stdout
    assert refresh_token not in kernel.transcript() and client_secret not in kernel.transcript()
