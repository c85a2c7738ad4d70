"""What a notebook cell shows when something expected goes wrong, in a real kernel with no
Jupyter server (against the emulator): a ts_notebook error is its message and what to do in a
few lines, still an error (a notebook run stops there), with the full traceback one ``%tb``
away; other errors keep IPython's traceback; loading the extension again says nothing; the
sign-in widget carries words for where it cannot be drawn."""

from __future__ import annotations

import contextlib
import re

import pytest

from ts_notebook.kernel.tracebacks import FULL_TRACEBACK
from ts_notebook.kernel.widget import FALLBACK

from ...parts.kernels import serverless_kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def lines(traceback: list[str]) -> list[str]:
    """The traceback as the frontend shows it: its entries joined, colours dropped."""
    return ANSI.sub("", "\n".join(traceback)).splitlines()


@contextlib.asynccontextmanager
async def loaded(env: dict[str, str]):
    """A kernel with no server whose first cell was ``%load_ext ts_notebook``."""
    async with serverless_kernel(env) as kernel:
        assert (await kernel.run("%load_ext ts_notebook")).error is None
        yield kernel


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        # Through requests' internals: the bearer auth finds nobody signed in.
        ('ts.session.get("brokerage/accounts")', "NotSignedIn: Not signed in to TradeStation. Run %ts_login"),
        (
            "import requests\nfrom ts_notebook.kernel.replies import api_error\n"
            "import os\nraise api_error(requests.get(os.environ['TS_API_URL'] + '/marketdata/quotes/MSFT'))",
            "APIError: TradeStation API: 401",
        ),
        ('ts.watch(" , ")', "ConfigError: Give at least one symbol, such as ts.watch(['MSFT', 'AAPL'])."),
    ],
    ids=["not-signed-in", "api-error", "config-error"],
)
async def test_a_ts_notebook_error_is_its_message_in_a_few_lines_and_tb_shows_the_rest(local_env, code, shown):
    async with loaded(local_env) as kernel:
        result = await kernel.run(code)
        full = await kernel.run("%tb")

    short = lines(result.traceback)
    assert result.error is not None and result.error.startswith(shown.split(": ", 1)[0] + ": "), result
    assert len(short) <= 6 and short[0].startswith(shown) and short[-1] == FULL_TRACEBACK, short
    assert full.error == result.error
    text = lines(full.traceback)
    assert len(text) > 6 and any("Traceback" in line or "File " in line or "Cell In" in line for line in text), text


async def test_other_errors_keep_ipythons_traceback(local_env):
    async with loaded(local_env) as kernel:
        result = await kernel.run("def parse():\n    raise ValueError('not a number')\nparse()")

    text = "\n".join(lines(result.traceback))
    assert result.error == "ValueError: not a number"
    assert "Traceback (most recent call last)" in text and "parse()" in text and FULL_TRACEBACK not in text


async def test_loading_the_extension_again_says_nothing(local_env):
    async with loaded(local_env) as kernel:
        again = await kernel.run("%load_ext ts_notebook")
        used = await kernel.run("print(ts.__name__)")

    assert (again.stdout, again.stderr, again.data, again.error) == ("", "", [], None)
    assert used.stdout == "ts_notebook\n"


async def test_the_sign_in_widget_says_run_this_cell_where_it_cannot_be_drawn(local_env):
    async with loaded(local_env) as kernel:
        result = await kernel.run("%ts_login --timeout 5")

    [bundle] = [d for d in result.data if WIDGET_VIEW in d]
    assert bundle["text/plain"] == FALLBACK == "Run this cell to sign in to TradeStation."
    assert FALLBACK in bundle["text/html"]
    assert bundle[WIDGET_VIEW]["model_id"]  # still the widget where widgets are drawn
    assert "localhost" not in bundle["text/plain"] + bundle["text/html"]


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        # pandas not installed (pip install ts_notebook, without the extra): ConfigError from ImportError.
        ('import sys\nsys.modules["pandas"] = None\nts.accounts()', "ConfigError: DataFrames need pandas"),
        # A ts_notebook error raised while the user's own code handles another.
        ("try:\n    {}['x']\nexcept KeyError:\n    ts.watch(' , ')", "ConfigError: Give at least one symbol"),
    ],
    ids=["raised-from-another", "raised-while-handling-another"],
)
async def test_a_chained_ts_notebook_error_is_still_shown_short_and_as_itself(local_env, code, shown):
    async with serverless_kernel(local_env) as kernel:
        assert (await kernel.run("%load_ext ts_notebook")).error is None
        result = await kernel.run(code)
        after = await kernel.run("raise ts.NotSignedIn()")  # the hook still installed

    short = ANSI.sub("", "\n".join(result.traceback)).splitlines()
    assert result.error is not None and result.error.startswith(shown), result.error  # nbclient's ename/evalue
    assert "Custom TB Handler failed" not in result.stdout + result.stderr, (result.stdout + result.stderr)[:300]
    assert len(short) <= 6 and short[-1] == "(%tb shows the full traceback)", short[-3:]
    assert ANSI.sub("", after.traceback[-1]) == "(%tb shows the full traceback)", after.traceback
