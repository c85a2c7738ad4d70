"""The jupyter-server extension: the token broker, its routes and the runtime file for kernels."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp

from ..config import BROKER_ENV_VAR, BROKER_PROTOCOL, SECRET_ENV, Settings, TSNotebook
from ..errors import ConfigError
from . import handlers
from .broker import TokenBroker


def loopback_host(ip: str) -> str:
    """A host that reaches a server bound to ``ip`` from this same machine."""
    if ip in ("", "*", "0.0.0.0", "localhost", "127.0.0.1", "::"):
        return "127.0.0.1"
    return f"[{ip}]" if ":" in ip else ip


class TSNotebookApp(ExtensionApp):
    """TradeStation sign-in for this Jupyter server (settings: ``c.TSNotebook.*``)."""

    name = "ts_notebook"
    load_other_extensions = True

    def initialize_settings(self) -> None:
        config_error = None
        try:
            settings = Settings.load(TSNotebook(parent=self))
        except ConfigError as exc:
            config_error = str(exc)
            self.log.error("ts_notebook: %s", exc)
            settings = Settings.load(environ={})
        # Kernels inherit this process's environment and never need the secret.
        for var in SECRET_ENV:
            os.environ.pop(var, None)
        self.key = secrets.token_urlsafe(32)
        self.broker = TokenBroker(settings, config_error=config_error)
        self.runtime_file = Path(self.serverapp.runtime_dir) / f"ts_notebook-{os.getpid()}-{self.serverapp.port}.json"
        self._write_runtime_file()
        if not settings.client_id and not config_error:
            self.log.warning("ts_notebook: no TradeStation key is set (TS_CLIENT_ID); %%ts_login will say how to set one")

    def initialize_handlers(self) -> None:
        self.handlers.extend([
            (r"/ts_notebook/login", handlers.LoginHandler),
            (r"/ts_notebook/callback", handlers.CallbackHandler),
            (r"/ts_notebook/api/token", handlers.TokenHandler),
            (r"/ts_notebook/api/refresh", handlers.RefreshHandler),
            (r"/ts_notebook/api/logout", handlers.LogoutHandler),
            (r"/ts_notebook/api/status", handlers.StatusHandler),
        ])

    async def _start_jupyter_server_extension(self, serverapp) -> None:  # type: ignore[no-untyped-def]
        # The server may have moved to another port since initialize (port busy, --port=0).
        self._write_runtime_file()

    def _write_runtime_file(self) -> None:
        sa = self.serverapp
        scheme = "https" if sa.certfile else "http"
        info = {
            "protocol": BROKER_PROTOCOL,
            "url": f"{scheme}://{loopback_host(sa.ip)}:{sa.port}{sa.base_url}",
            "base_url": sa.base_url,
            "key": self.key,
            "pid": os.getpid(),
        }
        self.runtime_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.runtime_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # the file holds the key: owner only, whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.environ[BROKER_ENV_VAR] = str(self.runtime_file)

    async def stop_extension(self) -> None:
        self.broker.close()
        self.runtime_file.unlink(missing_ok=True)
        if os.environ.get(BROKER_ENV_VAR) == str(self.runtime_file):
            del os.environ[BROKER_ENV_VAR]
