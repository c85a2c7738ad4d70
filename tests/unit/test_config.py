"""The settings table: one order (argument > traitlets > environment > default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from ts_notebook.config import TABLE, Settings
from ts_notebook.errors import ConfigError
from ts_notebook.server.app import TSNotebook


def traits(**values: str) -> TSNotebook:
    return TSNotebook(config=Config({"TSNotebook": values}))


@pytest.mark.parametrize(
    ("explicit", "configured", "env", "expected"),
    [
        (
            {"api_url": "https://a.example/v3"},
            {"api_url": "https://b.example/v3"},
            {"TS_API_URL": "https://c.example/v3"},
            "https://a.example/v3",
        ),
        ({}, {"api_url": "https://b.example/v3"}, {"TS_API_URL": "https://c.example/v3"}, "https://b.example/v3"),
        ({}, {}, {"TS_API_URL": "https://c.example/v3/"}, "https://c.example/v3"),
        ({}, {}, {}, "https://api.tradestation.com/v3"),
    ],
    ids=["argument", "traitlets", "environment", "default"],
)
def test_each_setting_is_read_in_one_order(explicit, configured, env, expected):
    assert Settings.load(traits(**configured), environ=env, **explicit).api_url == expected


def test_the_secret_file_is_read_and_an_explicit_secret_wins(tmp_path):
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    assert Settings.load(environ={"TS_CLIENT_SECRET_FILE": str(path)}).client_secret == "from-file"
    assert Settings.load(environ={"TS_CLIENT_SECRET_FILE": str(path), "TS_CLIENT_SECRET": "env"}).client_secret == "env"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TS_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "Cannot read the client secret file"),
        ({"TS_ENV": "paper"}, "TS_ENV must be 'live' or 'sim'"),
        ({"TS_API_URL": "api.tradestation.com"}, "is not an http(s) URL"),
    ],
    ids=["secret-file", "env", "url"],
)
def test_bad_values_say_what_to_fix(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load(environ=env)


def test_openid_is_always_asked_for_and_the_secret_never_shown():
    s = Settings.load(environ={"TS_SCOPES": "MarketData  ReadAccount", "TS_CLIENT_SECRET": "hush"})
    assert s.scopes == ("openid", "MarketData", "ReadAccount")
    assert "hush" not in repr(s)


def test_api_origins_are_the_two_api_bases_only():
    s = Settings.load(environ={"TS_API_URL": "https://api.example/v3", "TS_SIM_API_URL": "http://127.0.0.1:8/sim/v3"})
    assert s.api_origins == ("https://api.example:443", "http://127.0.0.1:8")


def test_a_missing_client_id_says_how_to_set_it():
    with pytest.raises(ConfigError, match="Set TS_CLIENT_ID"):
        Settings.load(environ={}).require_client_id()


def test_the_settings_page_documents_every_setting():
    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    for row in TABLE:
        assert f"| `{row.env}` | `c.TSNotebook.{row.name}` |" in page, row.env
