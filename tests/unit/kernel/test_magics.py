"""The magics in an IPython shell of this process: every failure is one line that says what
to do, never a traceback."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ts_notebook.kernel import api, state


@pytest.fixture
def shell(monkeypatch):
    monkeypatch.setattr(api, "_source", None)
    monkeypatch.setattr(api, "_objects", {})
    monkeypatch.setattr(state, "_told", set())  # as in a new process: nothing said yet
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ts_notebook")
    yield ip
    ip.run_line_magic("unload_ext", "ts_notebook")


def test_a_bad_option_prints_the_usage_in_one_line(shell, capsys):
    shell.run_line_magic("ts_login", "--bogus")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Usage: %ts_login [--paste] [--no-browser] [--timeout SECONDS] [--scopes" in err


def test_status_without_a_key_says_not_signed_in_and_where_nothing_is_kept(shell, capsys):
    status = shell.run_line_magic("ts_status", "")
    assert str(status).startswith("Not signed in to TradeStation. Run %ts_login to sign in.")
    assert "Sign-in not kept across restarts: no secure system keyring here. Set TS_TOKEN_STORE=file" in str(status)


def test_why_nothing_is_kept_is_said_once_per_process_then_only_that_it_is_not(shell):
    first, second, third = (str(shell.run_line_magic("ts_status", "")) for _ in range(3))

    assert "no secure system keyring here. Set TS_TOKEN_STORE=file" in first
    assert (
        second == third == "Not signed in to TradeStation. Run %ts_login to sign in.\nSign-in not kept across restarts."
    )


def test_logout_when_nobody_is_signed_in_says_there_is_nothing_to_sign_out(shell, capsys):
    shell.run_line_magic("ts_logout", "")
    assert capsys.readouterr().out == "Not signed in to TradeStation; nothing to sign out.\n"


def test_login_without_a_key_says_how_to_set_one(shell, capsys):
    shell.run_line_magic("ts_login", "--no-browser --timeout 1")
    err = capsys.readouterr().err
    assert err.startswith("ts_notebook: No TradeStation API key is set. Set TS_CLIENT_ID") and "Traceback" not in err


def test_the_package_is_in_the_namespace_as_ts(shell):
    import ts_notebook

    assert shell.user_ns["ts"] is ts_notebook


def test_a_bad_scope_is_one_line_before_anything_starts(shell, capsys, monkeypatch):
    monkeypatch.setenv("TS_CLIENT_ID", "some-key")
    shell.run_line_magic("ts_login", '--no-browser --timeout 1 --scopes "MarketData Tr@de"')
    err = capsys.readouterr().err
    assert (
        err == "ts_notebook: 'Tr@de' is not a scope name. Give scopes as words, such as: MarketData ReadAccount Trade\n"
    )
