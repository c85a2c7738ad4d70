"""The JupyterHub routing pieces on their own; tests/hub runs them in a real hub."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPServerRequest

from ts_notebook import hub


@pytest.mark.parametrize(("name", "prefix"), [("", "."), ("research", "research."), ("a.b c/d", "a.b%20c%2Fd.")],
                         ids=["default", "named", "odd-name"])
def test_state_names_its_server_and_the_name_comes_back(name, prefix):
    assert hub.state_prefix({"JUPYTERHUB_SERVER_NAME": name}) == prefix
    assert hub.server_of(prefix + "Zx_-random") == name
    assert hub.server_of("no-separator_-token") is None


@pytest.mark.parametrize(("public", "env", "expected"), [
    ("https://hub.example/", {}, "https://hub.example/hub/user-redirect/ts_notebook/callback"),
    (None, {"JUPYTERHUB_PUBLIC_HUB_URL": "https://pub.example/x/hub/", "JUPYTERHUB_BASE_URL": "/x/"},
     "https://pub.example/x/hub/user-redirect/ts_notebook/callback"),
    (None, {"JUPYTERHUB_BASE_URL": "/jh"}, "http://10.0.0.5:8000/jh/hub/user-redirect/ts_notebook/callback"),
], ids=["setting", "hub-env", "request"])
def test_one_callback_url_for_the_whole_hub(public, env, expected):
    assert hub.redirect_uri("http://10.0.0.5:8000", public, env) == expected


def request(uri: str) -> HTTPServerRequest:
    return HTTPServerRequest(method="GET", uri=uri)


@pytest.mark.parametrize(("path", "uri", "expected"), [
    ("ts_notebook/callback", "/hub/user-redirect/ts_notebook/callback?code=c&state=research.Zz",
     "/user/alice/research/ts_notebook/callback?code=c&state=research.Zz"),
    ("ts_notebook/callback", "/hub/user-redirect/ts_notebook/callback?code=c&state=.Zz", None),
    ("lab/tree/x.ipynb", "/hub/user-redirect/lab/tree/x.ipynb?state=research.Zz", None),
], ids=["named-server", "default-server", "not-ours"])
def test_the_user_redirect_hook_routes_only_our_callbacks_to_named_servers(path, uri, expected):
    user = SimpleNamespace(url="/user/alice/")
    assert hub.user_redirect_hook(path, request(uri), user, "/hub/") == expected
