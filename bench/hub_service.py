"""The hub service at scale, against a slow provider, with figures.

A real JupyterHub (for the service's identity checks), the service as a real process, and the
emulator with its token endpoint slowed to D seconds. N hub users, each with a token that may
call the service, as their servers do. Each phase runs twice side by side: the service as
shipped, and the same service with a pool of 12 (a server's exchanges queued in a small pool,
the baseline).

1. Exchanges: N sign-ins hand their codes to the service at once. Printed: how many completed
   within a server's wait (60 s), the median and longest wait.
2. Renewals: N users signed in with L-second tokens; the token endpoint then slows to D s.
   Printed: how many users' tokens were renewed before they expired (goal: all), and reads
   of current tokens made meanwhile by 16 readers (p50/p99; goal: p99 under 50 ms).

    python bench/hub_service.py [--users 200] [--delay 20] [--lifetime 90]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from ts_notebook.config import Settings
from ts_notebook.emulator import Emulator
from ts_notebook.launch import free_port
from ts_notebook.oauth import OAuthClient
from ts_notebook.service_protocol import Handover

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "ts-notebook"
PREFIX = f"/services/{SERVICE}/"
CALLBACK = "http://127.0.0.1:9/callback"
SERVER_WAIT = 60.0  # how long a user's server waits for an exchange


def wait_until_up(url: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(600):
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited")
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


class Hub:
    """A JupyterHub that knows the users and the service; no user servers are started."""

    def __init__(self, tmp: Path, service_port: int) -> None:
        self.port, hub_port, proxy_api = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{hub_port}/hub/api"
        self.admin, self.service_token = secrets.token_hex(24), secrets.token_hex(24)
        chp = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
        (tmp / "jupyterhub_config.py").write_text(f"""
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{str(chp)!r}]
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.db_url = "sqlite:///{tmp / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
c.JupyterHub.services = [
    {{"name": "bench", "api_token": {self.admin!r}}},
    {{"name": {SERVICE!r}, "url": "http://127.0.0.1:{service_port}", "api_token": {self.service_token!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "bench", "services": ["bench"], "scopes": ["admin:users", "tokens"]}},
    {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
]
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "JUPYTERHUB_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_up(f"http://127.0.0.1:{self.port}/hub/api/", self.proc, "JupyterHub")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.admin}"

    def users(self, names: list[str]) -> dict[str, str]:
        """Create ``names``; a token for each that may call the service."""
        self.http.post(f"{self.api_url}/users", json={"usernames": names}, timeout=60).raise_for_status()
        scope = [f"access:services!service={SERVICE}"]
        with ThreadPoolExecutor(16) as pool:
            replies = pool.map(
                lambda n: self.http.post(f"{self.api_url}/users/{n}/tokens", json={"scopes": scope}, timeout=60),
                names,
            )
            return {n: r.json()["token"] for n, r in zip(names, replies, strict=True)}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class Service:
    """The service process, with ``workers`` provider calls in flight at once."""

    def __init__(self, tmp: Path, em: Emulator, secret: str, hub: Hub, port: int, workers: int) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TS_", "JUPYTERHUB_"))},
            "JUPYTERHUB_API_TOKEN": hub.service_token,
            "JUPYTERHUB_API_URL": hub.api_url,
            "JUPYTERHUB_SERVICE_NAME": SERVICE,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
            "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
            "TS_CLIENT_ID": em.client_id,
            "TS_CLIENT_SECRET": secret,
            "TS_SIGNIN_URL": em.url,
            "TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(32),
            "TS_NOTEBOOK_VAULT": str(tmp / f"vault-{workers}-{secrets.token_hex(4)}.sqlite"),
        }
        self.url = f"http://127.0.0.1:{port}{PREFIX}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ts_notebook.hubservice", "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_up(self.url, self.proc, "the service")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(60)


def code_for(em: Emulator, client: OAuthClient, user: str):
    """A started login and the code TradeStation's page gives ``user`` for it."""
    pending = client.begin_login(CALLBACK)
    form = {k: v[0] for k, v in parse_qs(urlsplit(pending.authorize_url).query).items()}
    r = requests.post(
        f"{em.url}/authorize", data={**form, "username": user, "decision": "allow"}, allow_redirects=False, timeout=30
    )
    return pending, parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]


def hand_over(url: str, token: str, pending, code: str) -> tuple[bool, float, dict]:
    """Hand a code to the service as a user's server does; (ok, seconds, state)."""
    start = time.monotonic()
    try:
        headers = {"Authorization": f"token {token}"}
        r = requests.post(
            f"{url}api/signin", json=Handover.of(pending, code).to_json(), headers=headers, timeout=SERVER_WAIT
        )
        return r.status_code == 200, time.monotonic() - start, r.json()
    except requests.RequestException:
        return False, time.monotonic() - start, {}


def read(url: str, token: str) -> tuple[float, dict]:
    start = time.monotonic()
    r = requests.get(
        f"{url}api/signin", params={"since": 0, "timeout": 0}, headers={"Authorization": f"token {token}"}, timeout=30
    )
    return time.monotonic() - start, r.json()


def ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e3


def exchanges(url: str, em: Emulator, client: OAuthClient, tokens: dict[str, str], delay: float) -> dict:
    started = [code_for(em, client, user) for user in tokens]
    em.token_delay = delay
    try:
        with ThreadPoolExecutor(len(tokens)) as pool:
            ended = list(pool.map(lambda a: hand_over(url, a[0], *a[1]), zip(tokens.values(), started, strict=True)))
    finally:
        em.token_delay = 0
    waits = sorted(s for ok, s, _ in ended if ok)
    return {"done": len(waits), "median": statistics.median(waits) if waits else float("nan"), "max": max(waits or [0])}


def renewals(url: str, em: Emulator, client: OAuthClient, tokens: dict[str, str], delay: float) -> dict:
    with ThreadPoolExecutor(32) as pool:
        signed = list(pool.map(lambda t: hand_over(url, t[1], *code_for(em, client, t[0])), tokens.items()))
    now = time.monotonic()
    states = [state for _, _, state in signed]
    first = {user: (now + st["expires_in"], st["access_token"]) for user, st in zip(tokens, states, strict=True)}
    em.token_delay = delay
    latencies: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        names = list(tokens)
        while not stop.is_set():
            latencies.append(read(url, tokens[random.choice(names)])[0])

    readers = [threading.Thread(target=reader) for _ in range(16)]
    for t in readers:
        t.start()
    renewed = 0
    try:
        for user, (expires, token) in sorted(first.items(), key=lambda kv: kv[1][0]):
            time.sleep(max(0.0, expires - 0.5 - time.monotonic()))  # just before it expires
            renewed += read(url, tokens[user])[1].get("access_token") != token
    finally:
        stop.set()
        for t in readers:
            t.join()
        em.token_delay = 0
    return {"renewed": renewed, "p50": ms(latencies, 50), "p99": ms(latencies, 99), "reads": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--delay", type=float, default=20.0, help="seconds the token endpoint takes")
    parser.add_argument("--lifetime", type=float, default=90.0, help="access token lifetime in seconds")
    args = parser.parse_args()
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as folder, Emulator(client_secret=secret) as em:
        tmp = Path(folder)
        em.add_redirect_uri(CALLBACK)
        client = OAuthClient(Settings.load(environ={"TS_CLIENT_ID": em.client_id, "TS_SIGNIN_URL": em.url}))
        port = free_port()
        hub = Hub(tmp, port)
        figures = {}
        try:
            for label, workers in (("service", 256), ("baseline (pool of 12)", 12)):
                for phase, run in (("exchanges", exchanges), ("renewals", renewals)):
                    em.access_token_lifetime = 1200 if phase == "exchanges" else args.lifetime
                    users = hub.users([f"{phase[0]}{workers}-{i}" for i in range(args.users)])
                    service = Service(tmp, em, secret, hub, port, workers)
                    try:
                        figures[label, phase] = run(service.url, em, client, users, args.delay)
                    finally:
                        service.stop()
        finally:
            hub.stop()
    n, d = args.users, args.delay
    life = args.lifetime
    print(f"{n} users, token endpoint {d:.0f} s, tokens of {life:.0f} s (renewed {life / 3:.0f} s before expiry)")
    for label in ("service", "baseline (pool of 12)"):
        x, r = figures[label, "exchanges"], figures[label, "renewals"]
        print(
            f"{label:>22}: exchanges done within {SERVER_WAIT:.0f} s {x['done']}/{n} (median {x['median']:.1f} s, "
            f"longest {x['max']:.1f} s); renewed before expiry {r['renewed']}/{n}; "
            f"reads p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({r['reads']} reads)"
        )
    s, b = figures["service", "renewals"], figures["baseline (pool of 12)", "renewals"]
    sx, bx = figures["service", "exchanges"], figures["baseline (pool of 12)", "exchanges"]
    print(
        f"ratios service/baseline: exchanges done {sx['done'] / max(bx['done'], 1):.2f}, "
        f"renewed before expiry {s['renewed'] / max(b['renewed'], 1):.2f}, read p99 {s['p99'] / b['p99']:.2f}"
    )


if __name__ == "__main__":
    main()
