"""Which redirect URI a sign-in registers, by deployment (the table in docs/deployments.md),
as one pure function."""

from __future__ import annotations

from collections.abc import Callable


def choose_redirect_uri(
    configured: str | None, hub_callback: str | None, browser_on_this_machine: bool, own_callback: Callable[[], str]
) -> str | None:
    """The redirect URI for a sign-in started from a browser on a Jupyter server.

    Args:
        configured: ``TS_REDIRECT_URI``: always wins (a pathless ``http://localhost:PORT`` is
            relayed on exactly that port; see ``loopback.relay_port``).
        hub_callback: on JupyterHub, the hub's one user-redirect callback URL; else None.
        browser_on_this_machine: the browser reached Jupyter as localhost, 127.0.0.1 or [::1].
        own_callback: makes this server's callback on the origin the browser used (asked for
            only when it is the answer: it reads the request's Host).

    Returns:
        The URI, or None for the loopback relay's ``http://localhost:PORT`` on the first free
        relay port (a brand-new key's default callbacks).
    """
    if configured:
        return configured
    if hub_callback:
        return hub_callback
    return None if browser_on_this_machine else own_callback()
