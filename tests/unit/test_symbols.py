"""The symbols a call is given, read one way for ts.download, ts.quotes, ts.symbols and ts.watch."""

from __future__ import annotations

import pytest

from ts_notebook.errors import ConfigError
from ts_notebook.symbols import symbols_of


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("MSFT", ["MSFT"]),
        ("MSFT,AAPL", ["MSFT", "AAPL"]),
        (" MSFT , AAPL ", ["MSFT", "AAPL"]),
        ("MSFT AAPL\tSPY", ["MSFT", "AAPL", "SPY"]),
        ("MSFT AAPL MSFT", ["MSFT", "AAPL"]),
        ("MSFT 261218C400", ["MSFT 261218C400"]),
        ("MSFT 261218C400 AAPL, SPY 270115P512.5", ["MSFT 261218C400", "AAPL", "SPY 270115P512.5"]),
        (["MSFT", " AAPL ", "MSFT"], ["MSFT", "AAPL"]),
        (("ESZ26", "MSFT 261218C400"), ["ESZ26", "MSFT 261218C400"]),
    ],
    ids=["one", "commas", "blanks", "spaces", "twice", "option", "options-mixed", "list", "tuple"],
)
def test_symbols_are_read_in_order_each_once_and_an_option_keeps_its_space(given, read):
    assert symbols_of(given, "ts.download") == read


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (" , ", r"Give at least one symbol, such as ts\.quotes\(\['MSFT', 'AAPL'\]\)\."),
        ([], "Give at least one symbol"),
        (["MSFT", 3], r"Give symbols as text, such as ts\.quotes\(\['MSFT', 'AAPL'\]\) or ts\.quotes\('MSFT AAPL'\)"),
    ],
    ids=["blank", "empty-list", "not-text"],
)
def test_no_symbol_or_one_not_text_is_a_clear_message_naming_the_call(given, says):
    with pytest.raises(ConfigError, match=says):
        symbols_of(given, "ts.quotes")
