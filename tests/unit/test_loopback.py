"""Which callback addresses are listened on locally, and how their ports are held."""

from __future__ import annotations

import socket

import pytest

from ts_notebook.loopback import SO_EXCLUSIVEADDRUSE, address_option, relay_port


@pytest.mark.parametrize(
    ("uri", "port"),
    [
        ("http://localhost", 80),
        ("http://localhost:3000", 3000),
        ("http://localhost:31022/", 31022),
        ("http://127.0.0.1:8080", 8080),
        ("http://[::1]:3001", 3001),
        ("https://localhost:3000", None),
        ("http://localhost:8888/ts_notebook/callback", None),
        ("http://jupyter.example.com:3000", None),
        ("http://localhost:3000/?x=1", None),
        ("http://localhost:99999", None),
    ],
    ids=lambda v: str(v),
)
def test_only_a_pathless_http_localhost_callback_is_relayed(uri, port):
    assert relay_port(uri) == port


def test_windows_holds_callback_ports_exclusively():
    # SO_REUSEADDR on Windows lets any other program bind the same port and take the callback.
    assert address_option("win32") == SO_EXCLUSIVEADDRUSE == getattr(socket, "SO_EXCLUSIVEADDRUSE", -5)
    assert address_option("linux") == address_option("darwin") == socket.SO_REUSEADDR
