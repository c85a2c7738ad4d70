"""A single Jupyter server's audit trail: its sign-ins, renewals and sign-outs, one JSON object
a line in the file ``c.TSNotebook.audit_log`` names, nothing secret in it."""

from __future__ import annotations

import logging

import pytest

from ts_notebook.errors import OAuthError

from ...parts.audit import find, read_trail
from ...parts.signin import sign_in


@pytest.fixture
def audit_file(tmp_path):
    return tmp_path / "audit" / "ts_notebook.jsonl"


@pytest.fixture
def jp_server_config(jp_server_config, audit_file):
    return {**jp_server_config, "TSNotebook": {**jp_server_config["TSNotebook"], "audit_log": str(audit_file)}}


async def test_a_servers_sign_in_renewal_and_sign_out_are_in_its_audit_file(
    server, emulator, audit_file, client_secret
):
    await sign_in(server)
    await server.ext.broker.signin.refresh()  # a renewal at the provider
    emulator.fail_next_token_request("invalid_grant", status=400)
    with pytest.raises(OAuthError):
        await server.ext.broker.signin.refresh()  # a renewal the provider ends
    await sign_in(server)
    await server.ext.broker.logout()

    events = read_trail(audit_file, [*emulator.issued_secrets(), client_secret])
    assert [(e["event"], e["outcome"]) for e in events] == [
        ("signed_in", "ok"),
        ("renewed", "ok"),
        ("renewed", "ended"),
        ("signed_in", "ok"),
        ("signed_out", "ok"),
    ]
    assert find(events, event="renewed", outcome="ended")[0]["reason"] == "invalid_grant"
    assert all(e["source"] == "server" and e["hub_user"] is None for e in events)
    assert {e["subject"] for e in events if e["outcome"] != "ended"} == {"auth0|analyst"}
    assert audit_file.parent.stat().st_mode & 0o777 == 0o700


@pytest.fixture
def unwritable(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return folder


class TestAnAuditFileThatCannotBeWritten:
    @pytest.fixture
    def audit_file(self, unwritable):
        return unwritable  # a folder: no file can be opened there

    async def test_the_server_says_so_and_audits_to_the_logger(self, server, caplog):
        caplog.set_level(logging.INFO, logger="ts_notebook.audit")
        await sign_in(server)

        assert any('"event":"signed_in"' in r.getMessage() for r in caplog.records if r.name == "ts_notebook.audit")
        assert server.ext.audit.path is None
