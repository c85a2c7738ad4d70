"""The kernel's BrokerSource on its own: a reply from the broker it does not understand.
(Against a real broker: tests/scenarios/server/test_broker_source.py; a kernel whose broker
is missing or gone: tests/scenarios/kernel/test_broker_client.py.)"""

from __future__ import annotations

import pytest

from ts_notebook.errors import BrokerError
from ts_notebook.kernel.broker_client import BrokerSource


@pytest.mark.parametrize(
    "reply", [{}, {"version": "x"}, {"version": 1, "signed_in": True}], ids=["empty", "bad-version", "missing-fields"]
)
def test_a_reply_it_does_not_understand_is_a_broker_error_not_a_crash(reply):
    src = BrokerSource(client=None)  # type: ignore[arg-type] - _update makes no call
    with pytest.raises(BrokerError, match="does not understand"):
        src._update(reply)
