"""The documented hub set-up, run as written: JupyterHub starts the ts_notebook service itself
(a managed service) from the ``jupyterhub_config.py`` lines in docs/jupyterhub.md. The hub's
environment holds the key's id, the vault key and the path of the secret file; users' servers
get none of them but the id."""

from __future__ import annotations

import base64
import json
import re
import secrets

import pytest

from ts_notebook.emulator import Emulator

from ..conftest import CLIENT_ID
from ..parts.audit import find, read_trail
from .conftest import ACCOUNTS, ROOT, STATUS, hub_sign_in, running_hub, unused_port
from .test_service import COLLECT, UNTIL_SIGNED_IN

CLIENT_SECRET = secrets.token_urlsafe(24)
MARK = "<!-- hub-service-config -->"


def documented_config(port: int) -> str:
    """The jupyterhub_config.py block for the service in docs/jupyterhub.md, on ``port``."""
    text = (ROOT / "docs" / "jupyterhub.md").read_text()
    block = text.split(MARK, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "10101" in block
    return block.replace("10101", str(port))


@pytest.fixture(scope="module")
def managed_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("managed_hub")
    secret_file = tmp / "ts_client_secret"
    secret_file.write_text(CLIENT_SECRET)
    secret_file.chmod(0o600)
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as em:
        hub_env = {
            "TS_CLIENT_ID": CLIENT_ID,
            "TS_SIGNIN_URL": em.url,
            "TS_API_URL": f"{em.url}/v3",
            "TS_SIM_API_URL": f"{em.url}/sim/v3",
            "TS_CLIENT_SECRET_FILE": str(secret_file),
            "TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(32),
        }
        config = documented_config(unused_port())
        with running_hub(tmp, em, {"PYTHONPATH": str(ROOT)}, config, hub_env=hub_env) as hub:
            hub.folder = tmp
            yield hub


def test_the_documented_setup_signs_a_user_in_once_for_all_her_servers(managed_hub):
    alice = managed_hub.browser("alice")
    research, default = managed_hub.start("alice", "research"), managed_hub.start("alice")

    done = hub_sign_in(managed_hub, alice, research)

    assert "Signed in to TradeStation as analyst" in done.text
    status = managed_hub.run(default, UNTIL_SIGNED_IN)  # no click there: it hears it from the service
    assert "kept by the hub's ts_notebook service" in status, status
    assert managed_hub.run(default, ACCOUNTS).strip() == "11111111"
    assert "kept by the hub's ts_notebook service" in managed_hub.run(research, STATUS)
    assert "Not signed in" in managed_hub.run(managed_hub.start("bob"), STATUS)
    assert [g["grant_type"] for g in managed_hub.emulator.grants][:1] == ["authorization_code"]
    assert (managed_hub.folder / "ts_notebook_signins.sqlite").exists()  # the hub's working folder
    trail = read_trail(
        managed_hub.folder / "ts_notebook_audit.jsonl", [*managed_hub.emulator.issued_secrets(), CLIENT_SECRET]
    )
    assert find(trail, event="signed_in", outcome="ok", hub_user="alice", server="research")

    found = json.loads(managed_hub.run(default, COLLECT))
    env = json.loads(base64.b64decode(found["os.environ"]))
    assert env["TS_HUB_SERVICE_URL"].endswith("/services/ts-notebook/") and "TS_NOTEBOOK_CRYPT_KEY" not in env
    assert not [k for k in env if re.match(r"TS_CLIENT_SECRET", k)]
    assert not [
        p for p, v in found.items() if not v.startswith("unreadable") and CLIENT_SECRET.encode() in base64.b64decode(v)
    ]
