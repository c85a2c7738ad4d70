"""The topology of a real deployment: the hub and the ts_notebook service in a pod of their own,
each user's server in another, every pod with its own loopback (network namespaces on one
bridge, as Kubernetes gives pods), and the hub configured with the zero-to-jupyterhub values
of docs/jupyterhub.md as written: the service listens on every interface of the hub's pod
(``TS_NOTEBOOK_SERVICE_IP``) and users' servers reach it at ``hub:10101``.

Only what the chart itself configures is added here (the hub listening for pods, pods reaching
it as ``hub``, and a spawner that starts each server in its own pod). TradeStation is the
emulator on this machine's loopback, which a TCP relay in each pod brings to the pod's own
loopback (as an egress proxy brings the internet to a cluster's pods): its issuer is
``http://127.0.0.1:PORT`` for every pod, which ts_notebook allows over plain http.
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from ts_notebook.emulator import Emulator

from ..conftest import CLIENT_ID
from ..parts.audit import find, read_trail
from ..parts.netns import pods
from .conftest import ACCOUNTS, ROOT, STATUS, hub_sign_in, running_hub, unused_port
from .test_service import UNTIL_SIGNED_IN

CLIENT_SECRET = secrets.token_urlsafe(24)
DOCS = ROOT / "docs" / "jupyterhub.md"


def helm_values() -> dict:
    """The zero-to-jupyterhub values in docs/jupyterhub.md, as a chart would read them."""
    section = DOCS.read_text().split("## zero-to-jupyterhub (Helm)", 1)[1]
    return yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])


# What the zero-to-jupyterhub chart configures itself (its jupyterhub_config.py), here: the hub
# listens for pods on every interface of its pod and they reach it as `hub`; the spawner starts
# each server in a pod of its own (KubeSpawner's part), addressed on the bridge.
CHART = """
import sys
from jupyterhub.spawner import SimpleLocalProcessSpawner

PODS = {pods!r}
TAKEN = {{}}


class PodSpawner(SimpleLocalProcessSpawner):
    async def start(self):
        key = (self.user.name, self.name)
        if key not in TAKEN:  # a server keeps its pod across restarts
            TAKEN[key] = PODS[len(TAKEN)]
        pod, self.ip = TAKEN[key]
        self.cmd = ["ip", "netns", "exec", pod, sys.executable, "-m", "jupyterhub.singleuser"]
        return await super().start()


c.JupyterHub.spawner_class = PodSpawner
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_url = "http://hub:{hub_port}"
"""


@pytest.fixture(scope="module")
def cluster():
    with pods(users=3) as made:
        yield made


@pytest.fixture(scope="module")
def pod_hub(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pod_hub")
    values = helm_values()["hub"]
    volume = tmp / "srv"  # the hub's volume
    volume.mkdir()
    secret_file = tmp / "client-secret"  # the mounted Secret
    secret_file.write_text(CLIENT_SECRET)
    secret_file.chmod(0o600)
    hub_env = {
        "TS_CLIENT_ID": CLIENT_ID,
        "TS_CLIENT_SECRET_FILE": str(secret_file),
        "TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(32),
        "TS_NOTEBOOK_VAULT": str(volume / Path(values["extraEnv"]["TS_NOTEBOOK_VAULT"]).name),
        "TS_NOTEBOOK_AUDIT_LOG": str(volume / Path(values["extraEnv"]["TS_NOTEBOOK_AUDIT_LOG"]).name),
    }
    assert set(values["extraEnv"]) == set(hub_env)  # the variables the values give the hub, no more
    assert values["service"]["extraPorts"] == [{"name": "ts-notebook", "port": 10101, "targetPort": 10101}]
    extra_config = values["extraConfig"]["ts_notebook"]
    assert 'SERVICE = "http://hub:10101"' in extra_config and '"TS_NOTEBOOK_SERVICE_IP": "0.0.0.0"' in extra_config
    ports = (unused_port(), unused_port())
    chart = CHART.format(pods=[(p.name, p.ip) for p in cluster.users], hub_port=ports[1])
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, port=unused_port()) as em,
        cluster.loopback_everywhere(int(em.url.rsplit(":", 1)[1])),
    ):
        hub_env.update(TS_SIGNIN_URL=em.url, TS_API_URL=f"{em.url}/v3", TS_SIM_API_URL=f"{em.url}/sim/v3")
        with running_hub(
            tmp,
            em,
            {"PYTHONPATH": str(ROOT)},
            chart + extra_config,
            ports,
            hub_env,
            address=cluster.hub.ip,
            inside=cluster.hub.command,
        ) as hub:
            hub.audit = Path(hub_env["TS_NOTEBOOK_AUDIT_LOG"])
            yield hub


# Run in a user's kernel: where its server is, and what it reaches at the service's port.
WHERE = """
import json, os, socket
env = dict(kv.split("=", 1) for kv in open(f"/proc/{os.getppid()}/environ").read().split("\\0") if "=" in kv)
def reaches(host):
    try:
        with socket.create_connection((host, 10101), timeout=3) as s:
            return s.getsockname()[0]
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({"service_url": env["TS_HUB_SERVICE_URL"], "api_url": env["JUPYTERHUB_API_URL"],
                  "hub": reaches("hub"), "loopback": reaches("127.0.0.1")}))
"""


def test_each_server_in_its_own_pod_reaches_the_service_at_hub_10101_and_one_sign_in_serves_them_all(pod_hub, cluster):
    alice = pod_hub.browser("alice")
    default, research = pod_hub.start("alice"), pod_hub.start("alice", "research")
    bob = pod_hub.start("bob")

    done = hub_sign_in(pod_hub, alice, default)

    assert "Signed in to TradeStation as analyst" in done.text
    assert pod_hub.run(default, ACCOUNTS).strip() == "11111111"
    assert "kept by the hub's ts_notebook service" in pod_hub.run(research, UNTIL_SIGNED_IN)  # no click there
    assert "Not signed in" in pod_hub.run(bob, STATUS)
    seen = [json.loads(pod_hub.run(server, WHERE)) for server in (default, research, bob)]
    for where, pod in zip(seen, cluster.users, strict=True):
        assert where["service_url"] == "http://hub:10101/services/ts-notebook/"
        assert where["api_url"].startswith("http://hub:")
        assert where["hub"] == pod.ip  # each from its own address on the bridge
        assert where["loopback"] == "ConnectionRefusedError"  # nothing of the hub's on a pod's loopback
    trail = read_trail(pod_hub.audit, [*pod_hub.emulator.issued_secrets(), CLIENT_SECRET])
    assert find(trail, event="signed_in", outcome="ok", hub_user="alice", server="")


# Run in bob's kernel: listen on his pod's loopback at the service's port for a while, as a user
# on a shared machine could while the service restarts; print what arrived.
LISTEN = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 10101))
s.listen()
s.settimeout(0.5)
got, end = 0, time.monotonic() + 8
while time.monotonic() < end:
    try:
        s.accept()[0].close()
        got += 1
    except socket.timeout:
        pass
print(got)
"""


def test_a_user_listening_at_the_services_port_in_his_pod_receives_no_one_elses_calls(pod_hub):
    alice = pod_hub.browser("alice")
    default = pod_hub.start("alice")
    if "Signed in" not in pod_hub.run(default, STATUS):
        hub_sign_in(pod_hub, alice, default)
    bob = pod_hub.start("bob")

    # While bob listens, alice's server is stopped and started: its first calls go to the service.
    with ThreadPoolExecutor(1) as pool:
        listening = pool.submit(pod_hub.run, bob, LISTEN)
        pod_hub.stop("alice")
        default = pod_hub.start("alice")
        signed_in = pod_hub.run(default, UNTIL_SIGNED_IN)
        received = listening.result()

    assert "kept by the hub's ts_notebook service" in signed_in
    assert received.strip() == "0"
