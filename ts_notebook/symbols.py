"""The symbols a call is given, read one way for every call (``ts.download``, ``ts.quotes``,
``ts.symbols``, ``ts.watch``): a list, or text separated by commas or spaces
(``"MSFT, AAPL"``, ``"MSFT AAPL"``), each symbol once, in the order given. An option's symbol
keeps its space: ``"MSFT 261218C400 AAPL"`` is the option and AAPL (TradeStation writes an
option as its root, a space, then its expiration, side and strike)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ConfigError

# The second part of an option's symbol: expiration (YYMMDD), C or P, strike.
OPTION_TAIL = re.compile(r"\d{6}[CP]\d+(\.\d+)?$")


def symbols_of(symbols: str | Iterable[str], call: str) -> list[str]:
    """The symbols asked for, in order, each once.

    Args:
        call: what the caller is called (``ts.download``), for the message.

    Raises:
        ConfigError: none, or one that is not text.
    """
    if isinstance(symbols, str):
        given = [symbol for part in symbols.split(",") for symbol in _words(part)]
    else:
        given = list(symbols)
        if not all(isinstance(s, str) for s in given):
            raise ConfigError(f"Give symbols as text, such as {call}(['MSFT', 'AAPL']) or {call}('MSFT AAPL').")
    wanted = list(dict.fromkeys(s.strip() for s in given if s.strip()))
    if not wanted:
        raise ConfigError(f"Give at least one symbol, such as {call}(['MSFT', 'AAPL']).")
    return wanted


def _words(text: str) -> list[str]:
    """The symbols in ``text`` separated by spaces, an option's two parts as one."""
    out: list[str] = []
    for word in text.split():
        if out and OPTION_TAIL.match(word) and not OPTION_TAIL.search(out[-1]):
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out
