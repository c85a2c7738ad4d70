"""``ts-notebook-hub-service`` (or ``python -m ts_notebook.hubservice``): run the hub service.

JupyterHub starts it as a managed service, or it runs beside the hub as an external one; either
way the hub gives it ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_URL``
(where to listen) and ``JUPYTERHUB_SERVICE_PREFIX``. It reads the key like every ts_notebook
part (``TS_CLIENT_ID``, ``TS_CLIENT_SECRET`` or ``TS_CLIENT_SECRET_FILE``, ``TS_SIGNIN_URL``,
``TS_SCOPES``) and ``TS_NOTEBOOK_CRYPT_KEY``, and ``TS_NOTEBOOK_AUDIT_LOG`` for its audit
trail; without a usable key or audit file it says what to set and exits with status 2, before
it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..audit import Audit
from ..config import Settings
from ..errors import ConfigError, OAuthError, TSError
from ..oauth import OAuthClient
from ..store import Identity, Store
from .app import CALLER_CACHE, SWEEP_EVERY, WORKERS, Service, listen, make_app
from .directory import HubDirectory
from .vault import Vault, VaultBackend

log = logging.getLogger("ts_notebook.hubservice")

HUB_VARS = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX")


def seconds(text: str) -> float:
    """A positive number of seconds (argparse says what is wrong otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ts-notebook-hub-service",
        description="Keep each JupyterHub user's TradeStation sign-in for all of their servers.",
    )
    parser.add_argument(
        "--vault",
        default=os.environ.get("TS_NOTEBOOK_VAULT", "ts_notebook_signins.sqlite"),
        help="the encrypted sign-in database (default: $TS_NOTEBOOK_VAULT, else ts_notebook_signins.sqlite here)",
    )
    parser.add_argument(
        "--ip",
        default=os.environ.get("TS_NOTEBOOK_SERVICE_IP"),
        help="interface to listen on (default: the host of JUPYTERHUB_SERVICE_URL; 0.0.0.0 in a hub pod)",
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="provider calls in flight at once")
    parser.add_argument(
        "--sweep-every",
        type=seconds,
        default=os.environ.get("TS_NOTEBOOK_SWEEP_EVERY") or str(SWEEP_EVERY),
        metavar="SECONDS",
        help="how often the sign-ins of deleted hub users are revoked and deleted "
        f"(default: $TS_NOTEBOOK_SWEEP_EVERY, else {SWEEP_EVERY:.0f})",
    )
    parser.add_argument(
        "--forget",
        metavar="USER",
        action="append",
        default=[],
        help="revoke and delete USER's kept sign-in, then exit (repeatable). Stop the service first: "
        "a running one keeps what it holds. (A running service retires deleted users' sign-ins itself.)",
    )
    return parser.parse_args(argv)


class Refusal(TSError):
    """The service cannot start as configured; the message says what to set."""


def setup(args: argparse.Namespace) -> tuple[Settings, Vault, str, int, str]:
    """Everything the service needs, checked before it listens.

    Raises:
        Refusal: a missing hub variable, no key, or no encryption key.
    """
    missing = [v for v in HUB_VARS if not os.environ.get(v)]
    if missing:
        raise Refusal(
            f"{', '.join(missing)} not set: run this as a JupyterHub service (c.JupyterHub.services, "
            "see the JupyterHub admins page, docs/jupyterhub.md), which sets them."
        )
    try:
        settings = Settings.load()
        settings.require_client_id()
    except ConfigError as exc:
        raise Refusal(str(exc)) from exc
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    if not url.port:
        raise Refusal("JUPYTERHUB_SERVICE_URL names no port: give the service's url a port, such as :10101.")
    vault = Vault.from_environ(Path(args.vault).expanduser().resolve())
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"].rstrip("/") + "/"
    return settings, vault, args.ip or url.hostname or "127.0.0.1", url.port, prefix


async def serve(args: argparse.Namespace) -> None:
    from jupyterhub.services.auth import HubAuth

    settings, vault, ip, port, prefix = setup(args)
    if not settings.client_secret:
        log.warning("ts_notebook service: no client secret is set; only a PKCE-only key can sign in")
    audit = Audit(settings.audit_log, "hub service")
    directory = HubDirectory(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    service = Service(settings, vault, directory, args.workers, audit=audit)
    hub_auth = HubAuth(cache_max_age=CALLER_CACHE)
    server = listen(make_app(service, hub_auth, re.escape(prefix)), port, ip)
    log.info("ts_notebook service listening on %s:%d%s, keeping sign-ins in %s", ip, port, prefix, vault.path)
    await service.restore()
    sweeping = asyncio.ensure_future(service.keep_sweeping(args.sweep_every))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    sweeping.cancel()
    server.stop()
    service.close()
    await asyncio.sleep(0.1)  # the waiting servers' answers go out
    await loop.run_in_executor(None, service.wait_closed)  # renewals under way are kept first
    vault.close()
    audit.close()


def forget(args: argparse.Namespace) -> None:
    """Revoke each named user's kept sign-in at the provider and delete it from the vault."""
    settings = Settings.load()
    vault = Vault.from_environ(Path(args.vault).expanduser().resolve())
    client = OAuthClient(settings)
    audit = Audit(settings.audit_log, "hub service")
    for user in args.forget:
        store = Store(VaultBackend(vault, user), Identity.of(settings))
        tokens, _ = store.restore()
        said = "nothing kept"
        if tokens is not None and tokens.refresh_token:
            try:
                client.revoke(tokens.refresh_token)
                said = "revoked at the sign-in service and deleted"
            except OAuthError as exc:
                said = f"deleted; revoking it failed ({exc.error})"
        elif user in vault.users():
            said = "deleted (unreadable, so not revoked)"
        store.forget()
        if tokens is not None:
            audit.record("signed_out", "ok", hub_user=user, subject=tokens.user.get("sub"), reason=f"--forget: {said}")
        print(f"{user}: {said}")
    vault.close()
    audit.close()


def main(argv: list[str] | None = None) -> int:
    # Its own news at INFO; the libraries' (the hub's database layer among them) only when amiss.
    logging.basicConfig(level=logging.WARNING, format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    logging.getLogger("ts_notebook").setLevel(logging.INFO)
    args = parse_args(argv)
    try:
        if args.forget:
            forget(args)
        else:
            asyncio.run(serve(args))
    except TSError as exc:  # Refusal, VaultError: one clear line, no traceback
        print(f"ts_notebook service cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
