"""Kernels reach their server's broker however the server listens: on IPv6 only (``::``),
over HTTPS with a certificate for another name (pinned, not trusted by name), and on a Unix
socket. Each is a real ``jupyter server`` process and a kernel it started."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

from ts_notebook.errors import BrokerError
from ts_notebook.kernel.broker_client import BrokerClient, find_broker

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the test's own calls

PROBE = "from ts_notebook.kernel import api\nsrc = api.source()\nprint(type(src).__name__, src.current().signed_in)"


@pytest.mark.parametrize("bind", ["ipv6-any", "https", "unix-socket"])
def test_kernels_use_the_broker_however_the_server_listens(server_process, bind):
    server = server_process(bind)

    out = server.run(PROBE)

    assert out.strip() == "BrokerSource False", out  # the broker answered: no in-process fallback


def test_a_certificate_other_than_the_pinned_one_is_refused(server_process, monkeypatch):
    server = server_process("https")
    runtime_file = next(server.runtime_dir.glob("ts_notebook-*.json"))
    info = json.loads(runtime_file.read_text())
    assert len(info["cert_sha256"]) == 64

    pinned = find_broker({"TS_NOTEBOOK_BROKER": str(runtime_file)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pinned certificate is a verified one: no warning in a notebook
        assert BrokerClient(pinned).call("GET", "status")["signed_in"] is False
    impostor = dataclasses.replace(pinned, cert_sha256="00" * 32)
    with pytest.raises(BrokerError, match="TLS certificate is not the one it wrote for its kernels"):
        BrokerClient(impostor).call("GET", "status")
