"""The audit trail's lines: fixed fields, one line whatever a value holds, a private file, and
a quota on the lines an outage repeats."""

from __future__ import annotations

import json

import pytest

from ts_notebook.audit import FIELDS, Audit, AuditError, Trail


def lines(path):
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def test_a_fixed_field_stays_when_an_event_gives_none(tmp_path):
    audit = Audit(tmp_path / "a.jsonl", "server")
    trail = Trail(audit, hub_user="alice", server="research")

    trail("signed_in", "ok", server=None, subject="auth0|a")
    trail("signed_out", "ok", server="other")

    first, second = lines(tmp_path / "a.jsonl")
    assert tuple(first) == FIELDS and first["server"] == "research" and first["hub_user"] == "alice"
    assert second["server"] == "other"


@pytest.mark.parametrize("breaker", ["\n", "\r", "\u2028", "\u2029", "\u0085", "\x00"])
def test_no_value_breaks_a_line_in_two_and_none_is_longer_than_300(tmp_path, breaker):
    """A server's name is its user's choice: a fake line planted in it stays inside one field."""
    audit = Audit(tmp_path / "a.jsonl", "hub service")
    fake = '{"event":"signed_in","hub_user":"bob"}'

    audit.record("refused", "refused", hub_user="mallory", server=f"x{breaker}{fake}" * 50, reason="slow_down")

    text = (tmp_path / "a.jsonl").read_text()
    assert text.isascii() and len(text.splitlines()) == 1
    (event,) = lines(tmp_path / "a.jsonl")
    assert event["hub_user"] == "mallory" and len(event["server"]) == 300


def test_an_outage_writes_a_few_failed_renewals_then_one_a_minute_and_says_how_many_were_left_out(tmp_path):
    now = [0.0]
    audit = Audit(tmp_path / "a.jsonl", "server")
    trail = Trail(audit, clock=lambda: now[0])

    for _ in range(100):  # a renewal retried every few seconds while TradeStation is down
        trail("renewed", "failed", reason="temporarily_unavailable")
    now[0] += 60
    trail("renewed", "failed", reason="temporarily_unavailable")
    trail("renewed", "ok")

    written = lines(tmp_path / "a.jsonl")
    assert [e["outcome"] for e in written] == ["failed"] * 6 + ["ok"]
    assert written[5]["reason"] == "temporarily_unavailable; 95 more not written since"


def test_the_file_is_private_and_one_that_cannot_be_opened_says_what_to_do(tmp_path):
    Audit(tmp_path / "new" / "a.jsonl", "server").record("renewed", "ok")

    assert (tmp_path / "new" / "a.jsonl").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    with pytest.raises(AuditError, match="TS_NOTEBOOK_AUDIT_LOG"):
        Audit(tmp_path / "new", "server")  # a folder
