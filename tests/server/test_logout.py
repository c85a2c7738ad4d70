"""What %ts_logout says in a kernel of a Jupyter server (the server's broker signs out for
every kernel): signed out and revoked; forgotten though revoking failed, and why; or nothing
to sign out."""

from __future__ import annotations

import asyncio

import requests

from ts_notebook.errors import OAuthError
from ts_notebook.oauth import OAuthClient

from ..conftest import CLIENT_ID
from .conftest import new_kernel, sign_in


async def test_logout_says_the_sign_in_was_revoked_then_that_there_is_nothing_to_sign_out(
    server, kernels, emulator, client_secret
):
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel)
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


async def test_a_failed_revocation_is_said_with_its_reason(server, kernels, monkeypatch):
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel)
    await kernel.wait_for_widget(r"Signed in as analyst")

    def unreachable(self, token: str) -> None:
        raise OAuthError("network_error", "connection refused")

    monkeypatch.setattr(OAuthClient, "revoke", unreachable)
    result = await kernel.run("%ts_logout")

    assert result.stdout == (
        "Signed out of TradeStation: the sign-in is forgotten here, but revoking it at TradeStation failed "
        "(network_error: connection refused), so it may stay valid there.\n"
    ), result
    assert server.ext.broker.tokens is None
