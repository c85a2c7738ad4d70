"""The client secret reaches the broker but never a kernel's environment."""

from __future__ import annotations

import pytest

from ...parts.kernels import new_kernel
from ...parts.signin import sign_in

# (TS_CACHE_DIR is the tests' own: each test keeps its bars in a folder of its own.)
ENV_PROBE = "import os; print(sorted(k for k in os.environ if k.startswith('TS_') and k != 'TS_CACHE_DIR'))"


@pytest.fixture(params=["TS_CLIENT_SECRET", "TS_CLIENT_SECRET_FILE"])
def ts_config(request, ts_config, client_secret, monkeypatch, tmp_path):
    """The secret comes from the environment (or a file it names), not from config."""
    if request.param == "TS_CLIENT_SECRET":
        monkeypatch.setenv("TS_CLIENT_SECRET", client_secret)
    else:
        path = tmp_path / "client-secret"
        path.write_text(client_secret + "\n")
        monkeypatch.setenv("TS_CLIENT_SECRET_FILE", str(path))
    monkeypatch.setenv("TS_ENV", "sim")  # a harmless setting that kernels may see
    return {k: v for k, v in ts_config.items() if k != "client_secret"}


async def test_kernels_never_see_the_client_secret(server, kernels, emulator, client_secret):
    k = await new_kernel(server, kernels)
    _, page = await sign_in(server, kernel=k)  # only works if the broker read the secret

    out = await k.run(ENV_PROBE)

    assert "Signed in to TradeStation as analyst" in page.text
    assert out.stdout.strip() == "['TS_ENV', 'TS_NOTEBOOK_BROKER']", out
    assert server.ext.broker.settings.client_secret == client_secret
