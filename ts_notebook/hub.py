"""JupyterHub: one callback URL for every user, routed to the server that started the login.

TradeStation needs each callback URL registered, and a hub has one server per user (or
several). So every login registers ``{hub}/hub/user-redirect/ts_notebook/callback``: the hub
sends the browser on to *its* user's server, query kept. The login's ``state`` starts with the
server's name, so :func:`user_redirect_hook` (for ``jupyterhub_config.py``) routes the callback
straight to a named server; without the hook the default server forwards it there.

This module runs in the hub process too: standard library and ts_notebook's own pure modules only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .protocol import CALLBACK

# Separates the server name from the random part of state (token_urlsafe never makes a '.').
STATE_SEP = "."
# Names no JupyterHub server has, which would move a URL path: dot segments, and a slash.
DOT_SEGMENTS = frozenset({".", ".."})


@dataclass(frozen=True)
class HubServer:
    """This single-user server as JupyterHub describes it: every ``JUPYTERHUB_*`` variable
    ts_notebook uses is read here, and only here."""

    user: str
    server_name: str
    base_url: str
    public_hub_url: str | None
    # The server's own hub token: how it calls the hub's ts_notebook service as itself.
    api_token: str = field(default="", repr=False)

    @classmethod
    def here(cls, environ: Mapping[str, str] | None = None) -> HubServer | None:
        """This server, or None when it is not a JupyterHub single-user server."""
        env = os.environ if environ is None else environ
        if not env.get("JUPYTERHUB_SERVICE_PREFIX"):
            return None
        base = env.get("JUPYTERHUB_BASE_URL", "/")
        return cls(
            user=env.get("JUPYTERHUB_USER", ""),
            server_name=env.get("JUPYTERHUB_SERVER_NAME", ""),
            base_url=base if base.endswith("/") else base + "/",
            public_hub_url=env.get("JUPYTERHUB_PUBLIC_HUB_URL") or None,
            api_token=env.get("JUPYTERHUB_API_TOKEN", ""),
        )

    @property
    def state_prefix(self) -> str:
        """The start of ``state`` that names this server (empty name: the default server)."""
        return quote(self.server_name, safe="") + STATE_SEP

    def redirect_uri(self, request_origin: str, public_url: str | None = None) -> str:
        """The one callback URL of this hub: ``{public origin}{hub base}hub/user-redirect/...``.

        The origin comes from ``public_url`` (the hub_public_url setting), else
        ``JUPYTERHUB_PUBLIC_HUB_URL``, else the request that started the login.
        """
        parts = urlsplit(public_url or self.public_hub_url or request_origin)
        return f"{parts.scheme}://{parts.netloc}{self.base_url}hub/user-redirect/{CALLBACK}"

    def callback_of(self, server: str) -> str:
        """The callback on another of this user's servers."""
        return server_url(f"{self.base_url}user/{quote(self.user, safe='')}/", server)


def server_of(state: str) -> str | None:
    """The server name a hub login's ``state`` carries ("" for the default server), or None if
    it carries none. Check it with :func:`forwardable` before building a URL from it."""
    if STATE_SEP not in state:
        return None
    return unquote(state.rsplit(STATE_SEP, 1)[0])


def forwardable(server: str) -> bool:
    """Whether a callback may be sent on to the server named ``server`` ("" is the default):
    any name JupyterHub allows (no slash; older hubs allowed spaces and accents), never a dot
    segment or a control character. :func:`server_url` percent-encodes it into one segment."""
    return server == "" or (server not in DOT_SEGMENTS and "/" not in server and server.isprintable())


def server_url(user_base: str, server: str) -> str:
    """The callback on one of a user's servers, given the user's URL prefix (``/user/name/``)."""
    user_base = user_base if user_base.endswith("/") else user_base + "/"
    named = f"{quote(server, safe='')}/" if server else ""
    return f"{user_base}{named}{CALLBACK}"


def user_redirect_hook(path: str, request: Any, user: Any, base_url: str) -> str | None:
    """``c.JupyterHub.user_redirect_hook``: send a ts_notebook callback straight to the server
    whose login it is. Anything else keeps JupyterHub's default behaviour (None).

    JupyterHub's own routing goes through ``/hub/spawn/NAME?next=<the callback URL>``, and
    the hub's log prints that ``next``, code and state included; straight to the server, the
    hub logs the callback with code and state scrubbed. A state that names no server a
    callback may go to is sent to the default server's callback without its query (a page
    that says the sign-in is unknown), so no URL is built from it and no code is logged.
    """
    if path.strip("/") != CALLBACK:
        return None
    state = (request.query_arguments.get("state") or [b""])[0].decode("utf-8", "replace")
    server = server_of(state)
    if server is None or not forwardable(server):
        return server_url(user.url, "")
    return f"{server_url(user.url, server)}?{request.query}"
