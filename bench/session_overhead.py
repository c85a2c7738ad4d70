"""What ts.session costs per request, against a plain requests.Session with a fixed header and
against requests_oauthlib's OAuth2Session holding the same token.

All call the emulator's /v3/brokerage/accounts on 127.0.0.1, in alternating rounds (each in
its turn first, so that neither warms the way for the other) so that the machine's noise hits
them alike; the ratios to plain are the figures to watch. A loopback round trip is noisy next
to what a session adds, so the same calls are then made through a transport that answers at
once with no I/O: what is left is each session's own work, shown as microseconds per request
and as a share of the loopback request.

    python bench/session_overhead.py [--rounds 7] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import requests
from common import signed_in_source
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session

from ts_notebook.emulator import Emulator
from ts_notebook.kernel.session import TSSession


class Canned(HTTPAdapter):
    """A transport that answers every request at once, with no I/O."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        resp = requests.Response()
        resp.status_code, resp.url, resp.request, resp.connection = 200, request.url, request, self
        resp.headers["Content-Type"] = "application/json"
        resp._content = b'{"Accounts": []}'
        return resp


def rounds(calls: dict[str, object], n: int, count: int) -> dict[str, list[float]]:
    """Seconds per request of each (session, url) in ``calls``, ``count`` rounds of ``n``,
    the order turned by one each round."""
    names, out = list(calls), {name: [] for name in calls}
    for i in range(count):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            session, url = calls[name]
            out[name].append(timed(session, url, n))
    return out


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
        calls = {"plain": (plain, url), "ts.session": (ts_session, "brokerage/accounts"), "oauth": (oauth, url)}
        wire = rounds(calls, args.requests, args.rounds)
        ours = [o / p for o, p in zip(wire["ts.session"], wire["plain"], strict=True)]
        theirs = [o / p for o, p in zip(wire["oauth"], wire["plain"], strict=True)]
        print(
            f"loopback, median per-request ratio to plain ({args.rounds} rounds of {args.requests} requests, "
            f"plain {statistics.median(wire['plain']) * 1e3:.3f} ms): "
            f"ts.session {statistics.median(ours):.3f}, OAuth2Session {statistics.median(theirs):.3f}"
        )
        for session in (plain, ts_session, oauth):
            session.mount(em.url, Canned())
        idle = rounds(calls, args.requests * 10, args.rounds)
        base, loopback = statistics.median(idle["plain"]), statistics.median(wire["plain"])
        for name, label in (("ts.session", "ts.session"), ("oauth", "OAuth2Session")):
            extra = statistics.median(idle[name]) - base
            print(
                f"no I/O: {label} adds {extra * 1e6:6.1f} us per request to plain's {base * 1e6:.1f} us: "
                f"{extra / loopback:+.1%} of a loopback request"
            )


if __name__ == "__main__":
    main()
