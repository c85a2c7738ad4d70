"""python -m ts_notebook.emulator: serve the emulator until Ctrl-C or SIGTERM, and print the
``export`` lines that point ts_notebook in another terminal (terminal IPython, a script) at it."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from types import FrameType

from .app import DEFAULT_REDIRECT_URIS, Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m ts_notebook.emulator",
        description="Serve a local fake of TradeStation's sign-in and a tiny v3 API.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--client-id", default="emulator-client", help="the one registered client id")
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("TS_CLIENT_SECRET") or None,
        help="client secret (default: $TS_CLIENT_SECRET; unset = public client that must use PKCE)",
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        metavar="URI",
        help="another allowed callback URL, added to the defaults (repeatable)",
    )
    parser.add_argument("--token-lifetime", type=float, default=1200, help="access token lifetime in seconds")
    parser.add_argument(
        "--rotate-refresh-tokens",
        action="store_true",
        help="issue a new refresh token on every refresh and retire the old one",
    )
    return parser.parse_args(argv)


def exports(url: str, client_id: str, has_secret: bool) -> list[str]:
    """Shell lines that point ts_notebook at the emulator at ``url``. Never the secret: these
    lines end up in terminals and CI logs."""
    lines = [
        f"export TS_CLIENT_ID={shlex.quote(client_id)}",
        f"export TS_SIGNIN_URL={url}",
        f"export TS_API_URL={url}/v3",
        f"export TS_SIM_API_URL={url}/sim/v3",
    ]
    if has_secret:
        lines.append("# and TS_CLIENT_SECRET: the --client-secret this emulator was started with (not printed)")
    else:  # a public client: PKCE alone, and a secret left in the shell would be refused
        lines.append("unset TS_CLIENT_SECRET TS_CLIENT_SECRET_FILE")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground; returns the exit status."""
    args = parse_args(argv)
    emulator = Emulator(
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=DEFAULT_REDIRECT_URIS + [u for u in args.redirect_uri if u not in DEFAULT_REDIRECT_URIS],
        access_token_lifetime=args.token_lifetime,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
        host=args.host,
        port=args.port,
    )
    done = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator.start()
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        print(f"TradeStation emulator on {emulator.url} (client_id={args.client_id}). To use it from a terminal:")
        print("\n".join(exports(emulator.url, args.client_id, bool(args.client_secret))), flush=True)
        while not done.is_set():
            # A timeout keeps the main thread waking up to run signal handlers on every platform.
            done.wait(1.0)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
