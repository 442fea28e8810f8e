"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every response, like a distant server.

Each chunk the server sends is held for `--delay-ms` and then passed on, in order; chunks are not
held one after another, so the delay adds latency (one round trip per request) without capping
bandwidth. That is roughly how a storage account 20 ms away looks from a client.

    python bench/latency_proxy.py --port 0 --target-port 10000 --delay-ms 20

It prints `listening on PORT` once ready and runs until it is killed. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader -> writer; each chunk leaves `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    finally:
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await sender


async def _handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                  target_port: int, delay: float) -> None:
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pump(client_r, server_w, 0.0), _pump(server_r, client_w, delay))
    finally:
        for w in (client_w, server_w):
            with contextlib.suppress(OSError):
                w.close()


async def serve(port: int, target_port: int, delay_ms: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, target_port, delay_ms / 1000.0), "127.0.0.1", port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def start_in_subprocess(target_port: int, delay_ms: float) -> tuple[subprocess.Popen[str], int]:
    """Run this proxy in its own process (so it does not share the benchmark's GIL); -> (process,
    port it listens on)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--target-port", str(target_port),
         "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError("latency proxy did not start")
    return proc, int(line.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--target-port", type=int, required=True, help="port on 127.0.0.1 to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.target_port, args.delay_ms))


if __name__ == "__main__":
    main()
