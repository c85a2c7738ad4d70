"""The jupyter-server extension: the token broker, its routes and the runtime file for kernels."""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
from pathlib import Path
from urllib.parse import quote

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from ..audit import Audit, AuditError, Trail
from ..config import SECRET_ENV, TABLE, Settings
from ..errors import ConfigError
from ..hub import HubServer
from ..protocol import API, CALLBACK, ENV_VAR, LOGIN, RuntimeInfo
from . import handlers
from .broker import TokenBroker
from .harden import make_non_dumpable


def loopback_host(ip: str) -> str:
    """A host that reaches a server bound to ``ip`` from this same machine.

    ``""``, ``*`` and ``0.0.0.0`` listen on every IPv4 address (and ``""`` on IPv6 too), so
    127.0.0.1 reaches them; ``::`` listens on IPv6 only (tornado sets IPV6_V6ONLY), so [::1].
    """
    if ip in ("", "*", "0.0.0.0", "localhost", "127.0.0.1"):
        return "127.0.0.1"
    if ip in ("::", "[::]"):
        return "[::1]"
    ip = ip.strip("[]")
    return f"[{ip}]" if ":" in ip else ip


def certificate_sha256(certfile: str) -> str:
    """SHA-256 of the first (leaf) certificate in a PEM file: what kernels pin, since the
    certificate names the server's public host, not the loopback address they use."""
    pem = Path(certfile).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    der = ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----") : pem.index(end) + len(end)])
    return hashlib.sha256(der).hexdigest()


def broker_url(serverapp) -> str:  # type: ignore[no-untyped-def]
    """The loopback URL kernels use to reach this server, whatever it is bound to."""
    if getattr(serverapp, "sock", ""):
        return f"http+unix://{quote(serverapp.sock, safe='')}{serverapp.base_url}"
    scheme = "https" if serverapp.certfile else "http"
    return f"{scheme}://{loopback_host(serverapp.ip)}:{serverapp.port}{serverapp.base_url}"


def setting(name: str) -> Unicode:
    """The trait of one row of the settings table: its help, and the variable it falls back to."""
    row = next(s for s in TABLE if s.name == name)
    default = f" Default: {row.default}." if row.default else ""
    return Unicode(None, allow_none=True, help=f"{row.help} Env: {row.env}.{default}").tag(config=True)


class TSNotebook(ExtensionApp):
    """TradeStation sign-in for this Jupyter server. Each setting (``c.TSNotebook.<name>``)
    falls back to its ``TS_*`` environment variable; ``jupyter ts-notebook --help-all`` lists
    them and ``jupyter ts-notebook --generate-config`` writes them to
    ``jupyter_ts_notebook_config.py``."""

    name = "ts_notebook"
    description = "TradeStation sign-in for Jupyter: a Jupyter server with the ts_notebook extension."
    load_other_extensions = True

    client_id = setting("client_id")
    client_secret = setting("client_secret")
    client_secret_file = setting("client_secret_file")
    signin_url = setting("signin_url")
    audience = setting("audience")
    scopes = setting("scopes")
    redirect_uri = setting("redirect_uri")
    hub_public_url = setting("hub_public_url")
    hub_service_url = setting("hub_service_url")
    relay_ports = setting("relay_ports")
    api_url = setting("api_url")
    sim_api_url = setting("sim_api_url")
    env = setting("env")
    token_store = setting("token_store")
    max_retries = setting("max_retries")
    retry_max_wait = setting("retry_max_wait")
    audit_log = setting("audit_log")

    def initialize_settings(self) -> None:
        config_error = None
        try:
            settings = Settings.load(self)
        except ConfigError as exc:
            config_error = str(exc)
            self.log.error("ts_notebook: %s", exc)
            settings = Settings.load(environ={})
        # Kernels inherit this process's environment and never need the secret. Popping it
        # does not erase the environment this process started with (/proc/<pid>/environ), so
        # other processes of the user (kernels among them) are also kept from reading this
        # one's memory and environment where the system allows it.
        for var in SECRET_ENV:
            os.environ.pop(var, None)
        if not make_non_dumpable():
            self.log.debug("ts_notebook: this system cannot keep other processes out of the server's memory")
        self.key = secrets.token_urlsafe(32)
        here = HubServer.here()
        try:
            self.audit = Audit(settings.audit_log, "server")
        except AuditError as exc:  # the server runs; its audit events go to the log instead
            self.log.error("ts_notebook: %s", exc)
            self.audit = Audit(None, "server")
        trail = Trail(self.audit, hub_user=here.user if here else None, server=here.server_name if here else None)
        self.broker = TokenBroker(
            settings, config_error=config_error, hub_token=here.api_token if here else None, trail=trail
        )
        if settings.hub_service_url and here is None:
            self.log.warning("ts_notebook: TS_HUB_SERVICE_URL is set but this is no JupyterHub server; it is ignored")
        self.runtime_file = Path(self.serverapp.runtime_dir) / f"ts_notebook-{os.getpid()}-{self.serverapp.port}.json"
        self._write_runtime_file()
        if not settings.client_id and not config_error:
            self.log.warning(
                "ts_notebook: no TradeStation key is set (TS_CLIENT_ID); %%ts_login will say how to set one"
            )

    def initialize_handlers(self) -> None:
        given = {"broker": self.broker, "key": self.key}
        self.handlers.extend(
            [
                (f"/{LOGIN}", handlers.LoginHandler, given),
                (f"/{CALLBACK}", handlers.CallbackHandler, given),
                (f"/{API}/token", handlers.TokenHandler, given),
                (f"/{API}/refresh", handlers.RefreshHandler, given),
                (f"/{API}/logout", handlers.LogoutHandler, given),
                (f"/{API}/status", handlers.StatusHandler, given),
            ]
        )

    async def _start_jupyter_server_extension(self, serverapp) -> None:  # type: ignore[no-untyped-def]
        # The server may have moved to another port since initialize (port busy, --port=0).
        self._write_runtime_file()
        await self.broker.restore()

    def _write_runtime_file(self) -> None:
        sa = self.serverapp
        cert = None
        if sa.certfile and not getattr(sa, "sock", ""):
            try:
                cert = certificate_sha256(sa.certfile)
            except (OSError, ValueError) as exc:
                self.log.error(
                    "ts_notebook: cannot read the certificate in %s (%s); kernels will not reach this server",
                    sa.certfile,
                    type(exc).__name__,
                )
        RuntimeInfo(url=broker_url(sa), base_url=sa.base_url, key=self.key, pid=os.getpid(), cert_sha256=cert).write(
            self.runtime_file
        )
        os.environ[ENV_VAR] = str(self.runtime_file)

    async def stop_extension(self) -> None:
        self.broker.close()
        self.audit.close()
        self.runtime_file.unlink(missing_ok=True)
        if os.environ.get(ENV_VAR) == str(self.runtime_file):
            del os.environ[ENV_VAR]


main = launch_new_instance = TSNotebook.launch_instance
