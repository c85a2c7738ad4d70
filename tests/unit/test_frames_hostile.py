"""DataFrames from an API that misbehaves (a canned server on 127.0.0.1): pages that do not
move back in time, a repeating page token, no bars at all, replies that are not JSON or lack a
field, numbers out of range. Each ends in a frame or one TSError, never a hang or a traceback."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ts_notebook import frames
from ts_notebook.errors import TSError
from ts_notebook.kernel.session import TSSession

from ..parts.fakes import CannedAPI
from .kernel.test_session import signed_in  # noqa: F401 - the signed_in fixture
from .test_oauth import client  # noqa: F401 - the client fixture

BAR = {"TimeStamp": "2026-11-27T15:31:00Z", "Open": "1", "High": "2", "Low": "0.5", "Close": "1.5", "TotalVolume": "10"}


@pytest.fixture
def canned(signed_in):  # noqa: F811
    made = []

    def make(replies) -> TSSession:
        api = CannedAPI(replies)
        made.append(api)
        signed_in.snap = replace(signed_in.snap, api_url=f"{api.url}/v3", api_origins=(api.url,), max_retries=0)
        return TSSession(lambda: signed_in)

    yield make
    for api in made:
        api.close()


def body(obj) -> tuple[int, bytes]:
    return 200, json.dumps(obj).encode()


def test_full_pages_that_do_not_move_back_in_time_stop_the_paging(canned):
    from datetime import datetime, timezone

    from ts_notebook.emulator.market import barchart

    page = barchart("MSFT", {"unit": "Minute", "barsback": "57600"}, datetime.now(timezone.utc))
    reply = body(page)
    session = canned({"/v3/marketdata/barcharts/MSFT": lambda query: reply})  # lastdate ignored
    df = frames.bars(session, "MSFT", unit="Minute", start="2020-01-01")
    assert len(df) == 57_600 and df.index.is_unique


def test_a_repeating_page_token_stops_the_paging_with_a_warning(canned):
    order = {"AccountID": "1", "OrderID": "9"}
    session = canned({"/v3/brokerage/accounts/1/orders": body({"Orders": [order], "NextToken": "same"})})
    with pytest.warns(UserWarning, match="repeated a page token"):
        df = frames.orders(session, "1")
    assert len(df) <= 2


def test_no_bars_at_all_is_an_empty_frame(canned):
    session = canned({"/v3/marketdata/barcharts/MSFT": body({"Bars": []})})
    assert frames.bars(session, "MSFT", unit="Minute", start="2026-01-01").empty
    assert frames.bars(session, "MSFT", unit="Minute", barsback=60_000).empty


@pytest.mark.parametrize(
    "reply, says",
    [
        ((200, b"<html>a proxy's page</html>"), "not JSON"),
        (body({"Bars": [{"Open": "1"}]}), "no TimeStamp"),
        (body([1, 2, 3]), "not JSON"),
    ],
)
def test_a_reply_that_cannot_be_used_is_one_ts_error(canned, reply, says):
    session = canned({"/v3/marketdata/barcharts/MSFT": reply})
    with pytest.raises(TSError, match=says):
        frames.bars(session, "MSFT", barsback=5)


def test_a_volume_beyond_int64_is_kept_as_a_number(canned):
    session = canned({"/v3/marketdata/barcharts/MSFT": body({"Bars": [{**BAR, "TotalVolume": "9" * 30}]})})
    df = frames.bars(session, "MSFT", barsback=1)
    assert df["Volume"].iloc[0] == pytest.approx(1e30, rel=0.2)


def test_id_columns_stay_text(canned):
    position = {"AccountID": "1", "PositionID": "00123", "ParentOrderID": "987654321987654321", "Quantity": "5"}
    session = canned({"/v3/brokerage/accounts/1/positions": body({"Positions": [position]})})
    df = frames.positions(session, "1")
    assert df["PositionID"].iloc[0] == "00123" and df["ParentOrderID"].iloc[0] == "987654321987654321"
    assert df["Quantity"].dtype == "int64"


@pytest.mark.parametrize("quantities", [["5", "0.125"], ["5", ""], ["5", None]], ids=["fractional", "blank", "null"])
def test_a_count_that_is_not_whole_throughout_stays_a_float(canned, quantities):
    rows = [
        {"AccountID": "1", "Symbol": s, "Quantity": q} for s, q in zip(("BTCUSD", "ETHUSD"), quantities, strict=True)
    ]
    session = canned({"/v3/brokerage/accounts/1/positions": body({"Positions": rows})})
    df = frames.positions(session, "1")
    assert df["Quantity"].dtype == "float64" and df["Quantity"].iloc[0] == 5
