"""``import ts_notebook`` is cheap (DESIGN.md): importing it and making ``ts.session`` load
none of the heavy packages, which wait until something uses them. Checked in a fresh
interpreter, whose modules are only its own; bench/import_cost.py measures the time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..parts.kernels import environ_without_settings

ROOT = Path(__file__).resolve().parents[2]
# The sign-in's id_token checks (PyJWT, cryptography), the widget, the server, the frames.
HEAVY = ("jwt", "cryptography", "ipywidgets", "jupyter_server", "pandas")
LOADED = "import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))))"


@pytest.mark.parametrize(
    "code",
    ["import ts_notebook", "import ts_notebook; ts_notebook.session; ts_notebook.sim; ts_notebook.auth"],
    ids=["import", "session-sim-auth"],
)
def test_importing_and_making_the_session_loads_no_heavy_package(code):
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {LOADED % (HEAVY,)}"],
        cwd=ROOT,
        env=environ_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ""
