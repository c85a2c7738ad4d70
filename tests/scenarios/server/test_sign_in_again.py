"""Signing in again while signed in, against providers whose revocation ends more than the token
revoked (``Emulator.revocation``): the new sign-in is what stays. The same person's old refresh
token is dropped, never revoked; another person's is revoked once the new sign-in exists."""

from __future__ import annotations

import asyncio

import pytest
import requests

from ...conftest import CLIENT_ID
from ...parts.signin import sign_in

REVOCATIONS = ["token", "user", "grant"]


def refreshes(server, emulator, refresh_token: str) -> bool:
    """Whether the provider still renews with ``refresh_token``."""
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": server.ext.broker.settings.client_secret,
    }
    return requests.post(f"{emulator.url}/oauth/token", data=data, timeout=10).ok


@pytest.mark.parametrize("revocation", REVOCATIONS)
@pytest.mark.parametrize("scopes", [None, "MarketData ReadAccount Trade"], ids=["same-scopes", "more-scopes"])
async def test_the_same_person_signing_in_again_keeps_the_new_sign_in(server, emulator, server_log, revocation, scopes):
    emulator.revocation = revocation
    assert "Signed in to TradeStation as analyst" in (await sign_in(server)).page.text
    first = server.ext.broker.tokens

    page = (await sign_in(server, scopes=scopes)).page

    assert page.status_code == 200 and "Signed in to TradeStation as analyst" in page.text, page.text
    second = server.ext.broker.tokens
    assert second.refresh_token != first.refresh_token and ("Trade" in second.scopes) == bool(scopes)
    await server.ext.broker.refresh(None)  # the new sign-in renews at the provider
    renewed = server.ext.broker.tokens
    assert renewed is not None and renewed.access_token != second.access_token
    assert "superseded" in server_log.text
    assert [g["grant_type"] for g in emulator.grants if not g["ok"]] == []  # no code refused, nothing reused


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_another_person_signing_in_revokes_the_sign_in_it_replaces(server, emulator, revocation):
    emulator.revocation = revocation
    await sign_in(server, "analyst")
    first = server.ext.broker.tokens

    page = (await sign_in(server, "trader")).page

    assert "Signed in to TradeStation as trader" in page.text, page.text
    assert not await asyncio.to_thread(refreshes, server, emulator, first.refresh_token)
    await server.ext.broker.refresh(None)
    assert server.ext.broker.tokens.display_name == "trader"
