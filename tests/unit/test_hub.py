"""The JupyterHub routing pieces on their own; tests/hub runs them in a real hub."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import quote

import pytest
from tornado.httputil import HTTPServerRequest

from ts_notebook import hub


@pytest.mark.parametrize(
    ("name", "prefix"),
    [("", "."), ("research", "research."), ("a.b c/d", "a.b%20c%2Fd.")],
    ids=["default", "named", "odd-name"],
)
def test_state_names_its_server_and_the_name_comes_back(name, prefix):
    here = hub.HubServer.here({"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_SERVER_NAME": name})
    assert here.state_prefix == prefix
    assert hub.server_of(prefix + "Zx_-random") == name
    assert hub.server_of("no-separator_-token") is None


ODD_NAMES = ["..", ".", "%2e%2e", "%2E", ".%2e", "a%2Fb", "..%2F..", "%2F", "a%00b", "x/../y", "a%0Ab"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_callback_is_never_forwarded_to_an_odd_server_name(name):
    server = hub.server_of(f"{name}.Zz")
    assert server is not None and not hub.forwardable(server)
    request_ = request(f"/hub/user-redirect/ts_notebook/callback?code=c&state={name}.Zz")
    assert (
        hub.user_redirect_hook("ts_notebook/callback", request_, SimpleNamespace(url="/user/alice/"), "/hub/")
        == "/user/alice/ts_notebook/callback"
    )  # no query: no code to log, no URL from the odd name


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("research", "research"),
        ("r2-d2", "r2-d2"),
        ("a.b", "a.b"),
        ("...", "..."),
        ("_dev", "_dev"),
        ("my server", "my%20server"),
        ("\u00e9t\u00e9", "%C3%A9t%C3%A9"),
        ("%2e%2e", "%252e%252e"),
        ("a\\b", "a%5Cb"),
    ],
    ids=["slug", "digits", "dot-inside", "three-dots", "underscore", "space", "accents", "escaped-dots", "backslash"],
)
def test_names_jupyterhub_allows_are_forwarded_as_one_path_segment(name, segment):
    # Older hubs allowed spaces and accents; whatever the name, it stays one segment of alice's URL.
    assert hub.forwardable(name)
    state = quote(name, safe="") + ".Zz"  # as state_prefix() makes it
    query = f"code=c&state={quote(state, safe='')}"  # as it travels in the callback's URL
    assert hub.server_of(state) == name
    redirect = hub.user_redirect_hook(
        "ts_notebook/callback",
        request(f"/hub/user-redirect/ts_notebook/callback?{query}"),
        SimpleNamespace(url="/user/alice/"),
        "/hub/",
    )
    assert redirect == f"/user/alice/{segment}/ts_notebook/callback?{query}"


@pytest.mark.parametrize(
    ("public", "env", "expected"),
    [
        ("https://hub.example/", {}, "https://hub.example/hub/user-redirect/ts_notebook/callback"),
        (
            None,
            {"JUPYTERHUB_PUBLIC_HUB_URL": "https://pub.example/x/hub/", "JUPYTERHUB_BASE_URL": "/x/"},
            "https://pub.example/x/hub/user-redirect/ts_notebook/callback",
        ),
        (None, {"JUPYTERHUB_BASE_URL": "/jh"}, "http://10.0.0.5:8000/jh/hub/user-redirect/ts_notebook/callback"),
    ],
    ids=["setting", "hub-env", "request"],
)
def test_one_callback_url_for_the_whole_hub(public, env, expected):
    here = hub.HubServer.here({"JUPYTERHUB_SERVICE_PREFIX": "/jh/user/alice/", **env})
    assert here.redirect_uri("http://10.0.0.5:8000", public) == expected


def request(uri: str) -> HTTPServerRequest:
    return HTTPServerRequest(method="GET", uri=uri)


@pytest.mark.parametrize(
    ("path", "uri", "expected"),
    [
        (
            "ts_notebook/callback",
            "/hub/user-redirect/ts_notebook/callback?code=c&state=research.Zz",
            "/user/alice/research/ts_notebook/callback?code=c&state=research.Zz",
        ),
        (
            "ts_notebook/callback",
            "/hub/user-redirect/ts_notebook/callback?code=c&state=.Zz",
            "/user/alice/ts_notebook/callback?code=c&state=.Zz",
        ),
        ("lab/tree/x.ipynb", "/hub/user-redirect/lab/tree/x.ipynb?state=research.Zz", None),
    ],
    ids=["named-server", "default-server", "not-ours"],
)
def test_the_user_redirect_hook_routes_our_callbacks_straight_to_their_server(path, uri, expected):
    user = SimpleNamespace(url="/user/alice/")
    assert hub.user_redirect_hook(path, request(uri), user, "/hub/") == expected


def test_a_server_outside_a_hub_has_no_hub_server():
    assert hub.HubServer.here({"JUPYTERHUB_USER": "alice"}) is None  # no service prefix: not a hub server


def test_a_callback_for_another_server_of_the_user_goes_under_the_users_own_url():
    here = hub.HubServer.here(
        {"JUPYTERHUB_SERVICE_PREFIX": "/jh/user/al ice/", "JUPYTERHUB_BASE_URL": "/jh", "JUPYTERHUB_USER": "al ice"}
    )
    assert here.callback_of("research") == "/jh/user/al%20ice/research/ts_notebook/callback"
    assert here.callback_of("") == "/jh/user/al%20ice/ts_notebook/callback"
