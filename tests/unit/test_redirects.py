"""The redirect URI a sign-in registers, row by row of the deployment table in docs/deployments.md."""

from __future__ import annotations

import pytest

from ts_notebook.redirects import choose_redirect_uri

HUB = "https://hub.example/hub/user-redirect/ts_notebook/callback"
OWN = "https://jupyter.example/ts_notebook/callback"


@pytest.mark.parametrize(
    ("configured", "hub_callback", "local", "expected"),
    [
        (None, None, True, None),  # local server, brand-new key: the loopback relay
        (None, None, False, OWN),  # a server reached by its own name: its registered callback
        (None, HUB, False, HUB),  # JupyterHub: the one user-redirect URL
        (None, HUB, True, HUB),  # ... even for a hub on this machine
        ("http://localhost:3001", None, True, "http://localhost:3001"),  # configured: always wins
        ("https://cb.example/x", HUB, False, "https://cb.example/x"),
    ],
    ids=["local-relay", "registered-own", "hub", "hub-on-localhost", "configured-localhost", "configured-over-hub"],
)
def test_the_redirect_uri_by_deployment(configured, hub_callback, local, expected):
    assert choose_redirect_uri(configured, hub_callback, local, lambda: OWN) == expected
