"""What ts.session costs per request, against a plain requests.Session with a fixed header and
against requests_oauthlib's OAuth2Session holding the same token.

All call the emulator's /v3/brokerage/accounts on 127.0.0.1, in alternating rounds so that the
machine's noise hits them alike; the ratios to plain are the figures to watch.

    python bench/session_overhead.py [--rounds 7] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from urllib.parse import parse_qs, urlsplit

import requests
from requests_oauthlib import OAuth2Session

from ts_notebook.config import Settings
from ts_notebook.emulator import Emulator
from ts_notebook.kernel.local import LocalSource
from ts_notebook.kernel.session import TSSession


def signed_in_source(em: Emulator, secret: str) -> LocalSource:
    """An in-process token source signed in through the emulator's real sign-in page."""
    source = LocalSource(
        Settings.load(
            environ={},
            client_id="bench",
            client_secret=secret,
            signin_url=em.url,
            api_url=f"{em.url}/v3",
            sim_api_url=f"{em.url}/sim/v3",
        )
    )
    pending = source.client.begin_login("http://localhost:31022")
    query = {k: v[0] for k, v in parse_qs(urlsplit(pending.authorize_url).query).items()}
    r = requests.post(
        f"{em.url}/authorize",
        data={**query, "username": "bench", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    source.complete_login(pending, {"code": code, "state": pending.state})
    return source


def timed(session: requests.Session, url: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        session.get(url, timeout=10).raise_for_status()
    return (time.perf_counter() - start) / n


def main() -> None:
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the emulator is plain http on 127.0.0.1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    secret = "bench-" + str(time.time_ns())  # generated, never a real secret
    with Emulator(client_id="bench", client_secret=secret) as em:
        source = signed_in_source(em, secret)
        ts_session = TSSession(lambda: source)
        plain = requests.Session()
        plain.headers["Authorization"] = f"Bearer {source.tokens.access_token}"
        oauth = OAuth2Session("bench", token={"access_token": source.tokens.access_token, "token_type": "Bearer"})
        url = f"{em.url}/v3/brokerage/accounts"
        ours_ratios, oauth_ratios = [], []
        for _ in range(args.rounds):
            base = timed(plain, url, args.requests)
            ours = timed(ts_session, "brokerage/accounts", args.requests)
            theirs = timed(oauth, url, args.requests)
            ours_ratios.append(ours / base)
            oauth_ratios.append(theirs / base)
            print(
                f"plain {base * 1e3:7.3f} ms   ts.session {ours * 1e3:7.3f} ms ({ours / base:4.2f})   "
                f"OAuth2Session {theirs * 1e3:7.3f} ms ({theirs / base:4.2f})"
            )
        print(
            f"median per-request ratio to plain ({args.rounds} rounds of {args.requests} requests): "
            f"ts.session {statistics.median(ours_ratios):.2f}, OAuth2Session {statistics.median(oauth_ratios):.2f}"
        )


if __name__ == "__main__":
    main()
