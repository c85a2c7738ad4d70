"""The extension app's config file, as --generate-config writes it, read by a real
``jupyter server`` process. (The app's traits and the URL it gives kernels:
tests/unit/server/test_app.py.)"""

from __future__ import annotations

from ts_notebook.config import TABLE

from ...unit.server.test_app import jupyter


def test_generate_config_writes_every_setting_and_the_server_reads_that_file(tmp_path, server_process):
    jupyter("--generate-config", "-y", config_dir=tmp_path)
    written = tmp_path / "jupyter_ts_notebook_config.py"
    text = written.read_text()
    for row in TABLE:
        assert f"# c.TSNotebook.{row.name} = None" in text
    written.write_text(text.replace("# c.TSNotebook.token_store = None", "c.TSNotebook.token_store = 'none'"))

    server = server_process("ipv4", {"JUPYTER_CONFIG_DIR": str(tmp_path)})

    assert "Sign-in not kept across restarts: TS_TOKEN_STORE=none. Set TS_TOKEN_STORE=file" in server.run(
        "import ts_notebook as ts\nprint(ts.status())"
    )
