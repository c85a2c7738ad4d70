"""The extension app: its settings as traits (listed by --help-all, written by
--generate-config, read from its config file), and the loopback URL it gives kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ts_notebook.config import TABLE
from ts_notebook.server.app import TSNotebook, broker_url, loopback_host


def jupyter(*args: str, config_dir) -> str:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "ts-notebook", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_setting_is_a_trait_of_the_app_with_its_help_and_variable():
    traits = TSNotebook.class_own_traits(config=True)
    assert set(traits) == {row.name for row in TABLE}
    for row in TABLE:
        assert row.help in traits[row.name].help and f"Env: {row.env}." in traits[row.name].help


def test_help_all_lists_every_setting(tmp_path):
    out = jupyter("--help-all", config_dir=tmp_path)
    for row in TABLE:
        assert f"--TSNotebook.{row.name}=<Unicode>" in out and row.env in out


@pytest.mark.parametrize(
    "ip, host",
    [
        ("", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("::", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),
        ("fe80::1", "[fe80::1]"),
    ],
)
def test_kernels_reach_the_server_on_a_loopback_address_for_each_bind(ip, host):
    assert loopback_host(ip) == host


def test_the_broker_url_follows_the_scheme_socket_and_base_url():
    plain = SimpleNamespace(sock="", certfile="", ip="0.0.0.0", port=8888, base_url="/user/ann/")
    assert broker_url(plain) == "http://127.0.0.1:8888/user/ann/"
    assert broker_url(SimpleNamespace(**{**vars(plain), "certfile": "c.pem"})).startswith("https://")
    assert (
        broker_url(SimpleNamespace(**{**vars(plain), "sock": "/tmp/j.sock"})) == "http+unix://%2Ftmp%2Fj.sock/user/ann/"
    )
