"""A Jupyter server with ts_notebook, in this process (``server``) or as a process
(``server_process``), and the kernels a test starts (``parts.kernels.new_kernel``)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests
import requests_unixsocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ts_notebook.launch import free_port

from ...conftest import emulator_env
from ...parts.kernels import Kernel, run_in_kernel


@pytest.fixture
def server(jp_serverapp, http_server_client, jp_http_port, jp_base_url):
    """The running Jupyter server and its ts_notebook extension."""
    return SimpleNamespace(
        app=jp_serverapp,
        url=f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        token=jp_serverapp.identity_provider.token,
        ext=jp_serverapp.extension_manager.extension_points["ts_notebook"].app,
    )


@pytest.fixture
def server_log(caplog, server):
    """Everything the server (and the emulator beside it) logs, down to DEBUG; not the test's
    own HTTP client. (pytest-jupyter routes the server's log to pytest's capture, so its
    jp_logging_stream stays empty; the extension's own logger does not propagate.)"""
    caplog.set_level(logging.DEBUG)
    server.ext.log.addHandler(caplog.handler)
    yield ServerLog(caplog)
    server.ext.log.removeHandler(caplog.handler)


class ServerLog:
    def __init__(self, caplog) -> None:
        self.caplog = caplog
        self.format = logging.Formatter("%(levelname)s %(name)s %(message)s").format

    @property
    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.caplog.records if not r.name.startswith("urllib3"))


@pytest.fixture
def kernels():
    started: list[Kernel] = []
    yield started
    for k in started:
        k._pump_task.cancel()
        k.client.stop_channels()


def self_signed(folder: Path, name: str = "jupyter.example.com") -> tuple[Path, Path]:
    """A certificate for ``name`` only: a kernel that checked names would refuse 127.0.0.1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


@dataclasses.dataclass
class Server:
    url: str
    http: requests.Session
    runtime_dir: Path
    ws_base: str | None = None
    ws_options: dict = dataclasses.field(default_factory=dict)
    log: Path | None = None
    token: str = ""

    process: subprocess.Popen | None = None

    def run(self, code: str) -> str:
        return run_in_kernel(self.http, self.url, code, self.ws_base, **self.ws_options)

    def stop(self) -> None:
        """Stop it as a person does (Ctrl-C, or the hub's culler): SIGTERM, then wait."""
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def short_dir():
    # A Unix socket path must stay under ~100 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="tsnb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_process(emulator, client_secret, short_dir):
    """Start a real ``jupyter server`` process bound as ``bind`` says (``ipv4``, ``ipv6-any``,
    ``https``, ``unix-socket``), with extra environment; stopped after the test."""
    procs, sockets = [], []

    def start(bind: str = "ipv4", extra_env: dict[str, str] | None = None) -> Server:
        token = secrets.token_hex(16)
        runtime = short_dir / "runtime"
        env = emulator_env(emulator, client_secret, JUPYTER_RUNTIME_DIR=str(runtime), **(extra_env or {}))
        http = requests.Session()
        http.trust_env = False
        http.headers["Authorization"] = f"token {token}"
        port = free_port()
        args, server = [], None
        if bind == "ipv4":
            args = ["--ip=127.0.0.1", f"--port={port}"]
            server = Server(f"http://127.0.0.1:{port}/", http, runtime)
        elif bind == "ipv6-any":
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
            server = Server(
                f"http+unix://{quote(str(sock_path), safe='')}/",
                unix,
                runtime,
                ws_base="ws://localhost/",
                ws_options={"socket": sock},
            )
            server.connect_socket = lambda: sock.connect(str(sock_path))  # type: ignore[attr-defined]
        log = short_dir / f"{bind}-{len(procs)}.log"
        server.log = log
        with open(log, "w") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "jupyter",
                        "server",
                        "--allow-root",
                        "--no-browser",
                        "--port-retries=0",
                        f"--IdentityProvider.token={token}",
                        f"--ServerApp.root_dir={short_dir}",
                        *args,
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        server.process, server.token = procs[-1], token
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
