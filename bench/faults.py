"""The server under a misbehaving provider, with figures.

1. Status latency while sign-ins wait on a slow provider: N browsers complete TradeStation's
   page at once while the token endpoint takes D seconds to answer; meanwhile a kernel-side
   client polls ``api/status``. Printed: p50/p99 of those polls, the same measured just
   before with nothing waiting (the baseline, side by side), their ratio, and how the N
   sign-ins ended.
2. Many threads across an expiry: K kernels (real ones, started by jupyter_client with the
   server's runtime file), T threads each calling ``ts.session`` in a loop while the access
   token expires and is renewed. Printed: refresh grants at the provider (goal: exactly one),
   requests made, requests failed (goal: none).

    python bench/faults.py [--logins 50] [--delay 30] [--kernels 8] [--threads 100]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from common import server_env, start_server
from jupyter_client.manager import KernelManager

from ts_notebook.emulator import Emulator
from ts_notebook.launch import free_port
from ts_notebook.protocol import ENV_VAR, KEY_HEADER


def poll_status(url: str, key: str, seconds: float) -> list[float]:
    """Latencies (s) of back-to-back status calls for ``seconds``, as a kernel makes them."""
    http = requests.Session()
    http.trust_env = False
    http.headers[KEY_HEADER] = key
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        http.get(f"{url}ts_notebook/api/status", timeout=30).raise_for_status()
        times.append(time.perf_counter() - start)
        time.sleep(0.02)
    return times


def to_callback(url: str, token: str, username: str) -> tuple[requests.Session, str]:
    """A browser that starts a sign-in and presses Allow; returns it and its callback URL."""
    b = requests.Session()
    b.trust_env = False
    b.headers["Authorization"] = f"token {token}"
    authorize = b.get(f"{url}ts_notebook/login", allow_redirects=False, timeout=30).headers["Location"]
    form = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    r = b.post(
        authorize.split("?", 1)[0],
        data={**form, "username": username, "decision": "allow"},
        allow_redirects=False,
        timeout=30,
    )
    return b, r.headers["Location"]


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e3 if len(values) > 1 else values[0] * 1e3


def slow_provider(url: str, token: str, key: str, em: Emulator, logins: int, delay: float) -> None:
    baseline = poll_status(url, key, 10)
    em.token_delay = delay

    def sign_in(i: int) -> tuple[str, float]:
        browser, callback = to_callback(url, token, f"user{i}")
        start = time.monotonic()
        r = browser.get(callback, allow_redirects=False, timeout=delay * logins + 60)
        detail = r.text.split('id="ts-detail">', 1)[-1][:70] if r.status_code != 200 else ""
        return f"{r.status_code} {detail}".strip(), time.monotonic() - start

    with ThreadPoolExecutor(logins) as pool:
        results = []
        for i in range(logins):  # a few at a time: a server keeps at most 16 sign-ins pending
            results.append(pool.submit(sign_in, i))
            time.sleep(0.05)
        time.sleep(1)  # every callback is in, waiting on the token endpoint
        loaded = poll_status(url, key, min(delay, 20))
        ended = [r.result() for r in results]
    em.token_delay = 0
    print(
        f"status while {logins} sign-ins wait on a {delay:.0f} s token endpoint: "
        f"p50 {p(loaded, 50):.1f} ms, p99 {p(loaded, 99):.1f} ms ({len(loaded)} calls)"
    )
    print(
        f"status with nothing waiting (baseline):               "
        f"p50 {p(baseline, 50):.1f} ms, p99 {p(baseline, 99):.1f} ms ({len(baseline)} calls)"
    )
    print(f"p99 ratio (loaded / baseline): {p(loaded, 99) / p(baseline, 99):.2f}")
    waits = sorted(w for _, w in ended)
    print(
        f"the {logins} sign-ins waited median {statistics.median(waits):.1f} s, longest {waits[-1]:.1f} s, and ended:"
    )
    for outcome, count in Counter(s for s, _ in ended).most_common():
        print(f"  {count:3d} x {outcome}")


HAMMER = """
import json, threading, time
from collections import Counter
import ts_notebook as ts
seen, guard = Counter(), threading.Lock()
def run(until):
    while time.time() < until:
        try:
            outcome = str(ts.session.get("brokerage/accounts").status_code)
        except Exception as exc:
            outcome = type(exc).__name__
        with guard:
            seen[outcome] += 1
        time.sleep(PAUSE)
until = time.time() + SECONDS
workers = [threading.Thread(target=run, args=(until,)) for _ in range(THREADS)]
[w.start() for w in workers]
[w.join() for w in workers]
print(json.dumps(seen))
"""


def across_an_expiry(url: str, token: str, em: Emulator, secret: str, tmp: Path, kernels: int, threads: int) -> None:
    env = server_env(em, secret, tmp, **{ENV_VAR: str(next(tmp.glob("ts_notebook-*.json")))})
    managers = [KernelManager(kernel_name="python3") for _ in range(kernels)]
    clients = []
    for km in managers:
        km.start_kernel(env=env, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("import ts_notebook", timeout=60)
        clients.append(kc)
    try:
        em.access_token_lifetime = 12  # renewed 8 s after the sign-in, next at 16 s
        b, callback = to_callback(url, token, "analyst")
        b.get(callback, timeout=30).raise_for_status()
        before = sum(g["grant_type"] == "refresh_token" for g in em.grants)
        code = HAMMER.replace("PAUSE", "1.0").replace("SECONDS", "11").replace("THREADS", str(threads))

        def run(kc) -> Counter:
            out: list[str] = []
            kc.execute_interactive(
                code, timeout=120, output_hook=lambda m: m["msg_type"] == "stream" and out.append(m["content"]["text"])
            )
            return Counter(json.loads("".join(out)))

        with ThreadPoolExecutor(kernels) as pool:
            seen = sum(pool.map(run, clients), Counter())
        renewals = sum(g["grant_type"] == "refresh_token" for g in em.grants) - before
        failed = sum(n for outcome, n in seen.items() if outcome != "200")
        print(
            f"{kernels} kernels x {threads} threads for 11 s across an expiry: {renewals} refresh grant(s) at the "
            f"provider (goal 1); {sum(seen.values())} requests, {failed} failed (goal 0): {dict(seen)}"
        )
    finally:
        for kc, km in zip(clients, managers, strict=False):
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--delay", type=float, default=30.0)
    parser.add_argument("--kernels", type=int, default=8)
    parser.add_argument("--threads", type=int, default=100)
    args = parser.parse_args()
    secret = secrets.token_urlsafe(24)  # generated for this run only
    port = free_port()
    with Emulator(client_id="bench", client_secret=secret) as em, tempfile.TemporaryDirectory() as tmp:
        callback = f"http://127.0.0.1:{port}/ts_notebook/callback"
        em.add_redirect_uri(callback)
        proc, url, token, info = start_server(em, secret, Path(tmp), port=port, TS_REDIRECT_URI=callback)
        try:
            slow_provider(url, token, info.key, em, args.logins, args.delay)
            across_an_expiry(url, token, em, secret, Path(tmp), args.kernels, args.threads)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
