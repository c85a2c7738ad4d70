"""Kernels reach their server's broker however the server listens: on IPv6 only (``::``),
over HTTPS with a certificate for another name (pinned, not trusted by name), and on a Unix
socket. Each is a real ``jupyter server`` process and a kernel it started."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import requests_unixsocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ts_notebook.errors import BrokerError
from ts_notebook.kernel.broker_client import BrokerClient, find_broker
from ts_notebook.launch import free_port

from ..conftest import CLIENT_ID
from ..parts import run_in_kernel

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the test's own calls

PROBE = "from ts_notebook.kernel import api\nsrc = api.source()\nprint(type(src).__name__, src.current().signed_in)"


def self_signed(folder: Path, name: str = "jupyter.example.com") -> tuple[Path, Path]:
    """A certificate for ``name`` only: a kernel that checked names would refuse 127.0.0.1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


@dataclasses.dataclass
class Server:
    url: str
    http: requests.Session
    runtime_dir: Path
    ws_base: str | None = None
    ws_options: dict = dataclasses.field(default_factory=dict)

    def run(self, code: str) -> str:
        return run_in_kernel(self.http, self.url, code, self.ws_base, **self.ws_options)


@pytest.fixture
def short_dir():
    # A Unix socket path must stay under ~100 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="tsnb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_process(emulator, client_secret, short_dir):
    """Start ``jupyter server`` with extra arguments; stopped after the test."""
    procs, sockets = [], []

    def start(bind: str) -> Server:
        token = secrets.token_hex(16)
        runtime = short_dir / "runtime"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
        env.update(TS_CLIENT_ID=CLIENT_ID, TS_CLIENT_SECRET=client_secret, TS_SIGNIN_URL=emulator.url,
                   TS_API_URL=f"{emulator.url}/v3", TS_SIM_API_URL=f"{emulator.url}/sim/v3",
                   JUPYTER_RUNTIME_DIR=str(runtime))
        http = requests.Session()
        http.trust_env = False
        http.headers["Authorization"] = f"token {token}"
        port = free_port()
        args, server = [], None
        if bind == "ipv6-any":
            args = ["--ip=::", f"--port={port}"]
            server = Server(f"http://[::1]:{port}/", http, runtime)
        elif bind == "https":
            certfile, keyfile = self_signed(short_dir)
            args = ["--ip=127.0.0.1", f"--port={port}", f"--certfile={certfile}", f"--keyfile={keyfile}"]
            http.verify = False
            server = Server(f"https://127.0.0.1:{port}/", http, runtime, ws_options={"sslopt": {"cert_reqs": 0}})
        elif bind == "unix-socket":
            sock_path = short_dir / "jupyter.sock"
            args = [f"--sock={sock_path}"]
            unix = requests_unixsocket.Session()
            unix.headers.update(http.headers)
            sock = socket.socket(socket.AF_UNIX)
            sockets.append(sock)
            server = Server(f"http+unix://{quote(str(sock_path), safe='')}/", unix, runtime,
                            ws_base="ws://localhost/", ws_options={"socket": sock})
            server.connect_socket = lambda: sock.connect(str(sock_path))  # type: ignore[attr-defined]
        log = short_dir / f"{bind}.log"
        with open(log, "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "jupyter", "server", "--allow-root", "--no-browser", "--port-retries=0",
                 f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={short_dir}", *args],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if server.http.get(f"{server.url}api/status", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert procs[-1].poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        else:
            pytest.fail(f"jupyter server ({bind}) did not start:\n{log.read_text()[-3000:]}")
        if bind == "unix-socket":
            server.connect_socket()  # type: ignore[attr-defined]
        return server

    yield start
    for sock in sockets:
        sock.close()
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


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
