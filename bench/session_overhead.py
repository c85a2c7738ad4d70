"""What ts.session costs per request, against a plain requests.Session with a fixed header.

Both call the emulator's /v3/brokerage/accounts on 127.0.0.1, in alternating rounds so that
the machine's noise hits both alike; the ratio (ts.session / plain) is the figure to watch.

    python bench/session_overhead.py [--rounds 7] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from urllib.parse import parse_qs, urlsplit

import requests

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
    source.install(source.client.exchange(pending, code))
    return source


def timed(session: requests.Session, url: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        session.get(url, timeout=10).raise_for_status()
    return (time.perf_counter() - start) / n


def main() -> None:
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
        url = f"{em.url}/v3/brokerage/accounts"
        ratios = []
        for _ in range(args.rounds):
            base = timed(plain, url, args.requests)
            ours = timed(ts_session, "brokerage/accounts", args.requests)
            ratios.append(ours / base)
            print(
                f"plain {base * 1e3:7.3f} ms/request   ts.session {ours * 1e3:7.3f} ms/request   "
                f"ratio {ours / base:5.2f}"
            )
        print(
            f"median ratio ts.session / plain: {statistics.median(ratios):.2f} "
            f"({args.rounds} rounds of {args.requests} requests)"
        )


if __name__ == "__main__":
    main()
