"""What ``import ts_notebook`` and the first ``ts.session`` cost a fresh Python, against
``import requests`` (which ts.session is built on): wall time of fresh interpreters, in
alternating rounds so that the machine's noise hits every case alike; the ratios to
``import requests`` are the figures to watch.

    python bench/import_cost.py [--rounds 15]

The cases run with no Jupyter server behind them (the broker variable unset). ``ts.session``
only makes the session (its token source waits for the first request); ``+ its source``
also picks the source, the in-process one here, as a kernel with no server does; ``+ the
broker client`` loads the modules a kernel under a Jupyter server uses instead. The heavy
packages each case loaded are listed, so a regression names its culprit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BROKER = "import ts_notebook.kernel.broker_client"
CASES = {
    "import requests": "import requests",
    "ts.session": "import ts_notebook; ts_notebook.session",
    "ts.session + its source": "import ts_notebook; ts_notebook.session.base_url",
    "ts.session + the broker client": f"import ts_notebook; ts_notebook.session; {BROKER}",
}
BASELINE = "import requests"
# Kept off the way to ts.session until used (see DESIGN.md: `import ts_notebook` is cheap).
HEAVY = ("jwt", "cryptography", "ipywidgets", "jupyter_server", "pandas", "IPython", "tornado", "orjson", "keyring")
REPORT = "import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))))"


def environ() -> dict[str, str]:
    """This environment without ts_notebook's settings or the broker variable: a kernel with
    no server and the default store (the system keyring, when a secure one is found)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "JUPYTERHUB_"))}


def wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - started


def heavy(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {REPORT % (HEAVY,)}"], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip() or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    env = environ()
    for code in CASES.values():
        wall(code, env)  # compile and cache every module first: no round pays for it
    times: dict[str, list[float]] = {name: [] for name in CASES}
    ratios: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        this = {name: wall(code, env) for name, code in CASES.items()}
        for name, seconds in this.items():
            times[name].append(seconds)
            ratios[name].append(seconds / this[BASELINE])
    print(f"fresh interpreters, {args.rounds} alternating rounds, medians (ratio: of each round's own pair):")
    for name, code in CASES.items():
        print(
            f"  {name:32s} {statistics.median(times[name]) * 1e3:7.1f} ms   "
            f"{statistics.median(ratios[name]):4.2f}x {BASELINE}   heavy loaded: {heavy(code, env)}"
        )


if __name__ == "__main__":
    main()
