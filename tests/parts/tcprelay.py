"""A TCP relay: ``python tcprelay.py LISTEN_HOST PORT TO_HOST`` passes every connection to
LISTEN_HOST:PORT on to TO_HOST:PORT, both ways, and prints "ready" once it listens.

The topology test runs one in each pod (its loopback to the bridge) and one on this machine
(the bridge to the emulator's loopback): every pod then reaches TradeStation's emulator at the
same ``http://127.0.0.1:PORT``, its issuer, as a cluster's pods reach the internet through an
egress proxy. Standard library only: it runs with whatever Python runs the tests.
"""

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def main(listen_host: str, port: int, to_host: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(to_host, port), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen_host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
