"""A Jupyter server that stops and starts again (a restart, a hub's idle culler) keeps its
sign-in: kernels of the new server are signed in with no click."""

from __future__ import annotations

import json
import stat
import time

from ...parts.browser import Browser

STATUS = "import ts_notebook as ts\nprint(ts.status())\nprint(ts.session.get('brokerage/accounts').status_code)"


def test_a_restarted_server_signs_its_kernels_in_without_a_login(server_process, emulator, tmp_path):
    kept = {"TS_TOKEN_STORE": "file", "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    first = server_process("ipv4", kept)
    browser = Browser(first.url, first.token)
    browser.sign_in_to_jupyter()
    page = browser.sign_in_to_tradestation(f"{first.url}ts_notebook/login")
    assert "Signed in" in page.text, page.text[:500]
    first.stop()

    # Down for an hour: the kept access token has expired meanwhile.
    store = tmp_path / "data" / "ts_notebook" / "signin.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    record = json.loads(store.read_text())
    store.write_text(json.dumps({**record, "expires_at": time.time() - 3600}))

    second = server_process("ipv4", kept)
    out = second.run(STATUS)

    assert "Signed in to TradeStation as analyst" in out and out.strip().endswith("200"), out
    assert f"Sign-in kept across restarts in the file {store}" in out
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code", "refresh_token"]
    assert record["access_token"] not in store.read_text()  # the renewal was kept


def test_a_server_whose_store_others_can_read_signs_in_but_says_why_nothing_is_kept(server_process, tmp_path):
    folder = tmp_path / "data" / "ts_notebook"
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    server = server_process("ipv4", {"TS_TOKEN_STORE": "file", "JUPYTER_DATA_DIR": str(tmp_path / "data")})

    out = server.run("import ts_notebook as ts\nprint(ts.status())")

    assert "Not signed in to TradeStation" in out
    assert f"can be read by other users (mode 755), so it is not used. Run: chmod 700 {folder}" in out
    assert "Traceback" not in server.log.read_text()
