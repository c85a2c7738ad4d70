"""How fast a change on the broker reaches every watching kernel, against a plain round trip.

Starts the emulator and a real `jupyter server` with ts_notebook, attaches K kernel-side
watchers (BrokerSource, each with its own long-poll thread, as K kernels would have), then in
rounds: makes a change on the server (a sign-in started: the version moves) and times until
all K watchers have it; beside it, times one plain GET of the broker's status. The ratio
(all K informed / one round trip) is the figure to watch.

    python bench/push_latency.py [--kernels 8] [--rounds 20]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import start_server

from ts_notebook.emulator import Emulator
from ts_notebook.kernel.broker_client import BrokerClient, BrokerSource
from ts_notebook.protocol import KEY_HEADER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    secret = secrets.token_urlsafe(24)  # generated for this run only
    with Emulator(client_id="bench", client_secret=secret) as em, tempfile.TemporaryDirectory() as tmp:
        proc, url, token, info = start_server(em, secret, Path(tmp))
        try:
            watchers = [BrokerSource(BrokerClient(info)) for _ in range(args.kernels)]
            heard = [threading.Event() for _ in watchers]
            target = [0]
            for w, event in zip(watchers, heard, strict=True):
                w.add_listener(lambda snap, e=event: snap.version >= target[0] and e.set())
            browser = requests.Session()
            browser.headers["Authorization"] = f"token {token}"
            status = requests.Session()
            status.headers[KEY_HEADER] = info.key
            time.sleep(0.5)  # every watcher is long-polling now
            ratios, pushes, trips = [], [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                status.get(f"{url}ts_notebook/api/status", timeout=10).raise_for_status()
                trip = time.perf_counter() - start
                version = status.get(f"{url}ts_notebook/api/status", timeout=10).json()["version"]
                target[0] = version + 1
                for event in heard:
                    event.clear()
                start = time.perf_counter()
                browser.get(f"{url}ts_notebook/login", allow_redirects=False, timeout=10)  # the change
                for event in heard:
                    event.wait(10)
                push = time.perf_counter() - start
                pushes.append(push)
                trips.append(trip)
                ratios.append(push / trip)
            print(f"{args.kernels} kernels, {args.rounds} rounds")
            print(
                f"median: change seen by all kernels {statistics.median(pushes) * 1e3:.2f} ms; "
                f"one plain status round trip {statistics.median(trips) * 1e3:.2f} ms"
            )
            print(f"median ratio (all kernels informed / one round trip): {statistics.median(ratios):.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
