"""Stream parsing: messages per second of ts_notebook's stream reader against the naive loop
(``resp.iter_lines()`` + ``json.loads``) on the same stream, served on 127.0.0.1 as chunked HTTP
cut at random places (mid-object, mid-character). Rounds alternate so noise hits both alike.

    python bench/streams.py [--rounds 5] [--messages 200000] [--small]

``--small`` streams heartbeat-sized messages (the case where per-message overhead dominates).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import threading
import time

import requests

from ts_notebook.kernel.streams import Stream


def body(messages: int, small: bool) -> bytes:
    rng = random.Random(1)
    if small:
        objs = [{"Heartbeat": i, "Timestamp": "2026-11-29T10:00:00Z"} for i in range(messages)]
    else:
        objs = [
            {
                "Symbol": f"S{i % 500}",
                "Last": f"{rng.uniform(1, 900):.2f}",
                "Bid": "1.00",
                "Ask": "1.02",
                "Volume": str(rng.randint(1, 10**6)),
                "Description": "Société Générale ☃",
                "TradeTime": "2026-11-29T10:00:00Z",
                "MarketFlags": {"IsDelayed": False, "IsHalted": False},
            }
            for i in range(messages)
        ]
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)


def chunked(data: bytes, seed: int) -> bytes:
    """``data`` as HTTP/1.1 chunked encoding, chunks of 1 byte to 16 KiB cut anywhere."""
    rng, out, at = random.Random(seed), [], 0
    while at < len(data):
        size = rng.choice((1, 7, 100, 1500, 4096, 16384))
        piece = data[at : at + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += size
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def serve(payload: bytes) -> tuple[socket.socket, str]:
    """A loopback server answering every request with ``payload`` (already chunk-encoded)."""
    listener = socket.create_server(("127.0.0.1", 0))
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tradestation.streams.v2+json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(head + payload)

    threading.Thread(target=loop, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/stream"


def ours(url: str, expected: int) -> float:
    started = time.perf_counter()
    # heartbeats=True: every message counts, as in the naive loop.
    stream = Stream(
        lambda silence: requests.get(url, stream=True, timeout=(5, silence)), heartbeats=True, max_reconnects=0
    )
    count = 0
    for _ in stream:
        count += 1
        if count == expected:
            break
    stream.close()
    assert count == expected, count
    return expected / (time.perf_counter() - started)


def naive(url: str, expected: int) -> float:
    started = time.perf_counter()
    count = 0
    with requests.get(url, stream=True, timeout=(5, 15)) as resp:
        for line in resp.iter_lines():
            if line:
                json.loads(line)
                count += 1
    assert count == expected, count
    return expected / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    listener, url = serve(chunked(body(args.messages, args.small), seed=7))
    a, b = [], []
    for _ in range(args.rounds):
        a.append(ours(url, args.messages))
        b.append(naive(url, args.messages))
    listener.close()
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))  # each round's own pair: the load of that moment
    kind = "small (heartbeat-sized)" if args.small else "quote-sized"
    print(f"{args.messages} {kind} messages, {args.rounds} alternating rounds, medians:")
    print(f"  ts_notebook Stream     {statistics.median(a):>12,.0f} msg/s")
    print(f"  iter_lines+json.loads  {statistics.median(b):>12,.0f} msg/s")
    spread = f"(rounds: {ratios[0]:.2f} to {ratios[-1]:.2f})"
    print(f"  ratio                  {statistics.median(ratios):>12.2f}x  {spread}")


if __name__ == "__main__":
    main()
