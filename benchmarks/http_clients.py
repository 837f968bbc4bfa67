"""Which HTTP client the engine should call apps with: CPU per request and memory, measured.

``python -m benchmarks.http_clients [--requests 4000] [--concurrency 64]`` starts a minimal ASGI
app under uvicorn in a child process (it answers each POST like an SDK reporting one step) and, in
this process, sends it the same POSTs with each candidate, keep-alive, ``--concurrency`` at a time:

* ``httpx``: one ``httpx.AsyncClient`` (the engine's client before);
* ``aiohttp``: one ``aiohttp.ClientSession`` without cookies;
* ``h11``: h11's state machine over asyncio streams, one connection per sender (the engine's client
  before its own parser);
* ``engine``: ``inngest_mw_dev.appclient.AppClient`` (its own HTTP/1.1 framing on an asyncio
  protocol).

Each candidate runs in a fresh interpreter: a warm-up pass, then the CPU time of this process per
request over a measured pass; ``import MiB`` is what importing the client adds to the resident
memory of a process that has already imported the engine (so httpx, uvicorn and h11).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

CANDIDATES = ("httpx", "aiohttp", "h11", "engine")
BODY = json.dumps({"event": {"name": "bench", "data": {}}, "steps": {}, "ctx": {}}).encode()
REPLY = b'[{"op":"StepRun","id":"s0","data":1}]'


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serve(port: int) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json"), (b"x-inngest-sdk", b"bench")]
        await send({"type": "http.response.start", "status": 206, "headers": headers})
        await send({"type": "http.response.body", "body": REPLY})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _drive(post: Callable[[], Awaitable[bytes]], requests: int, concurrency: int) -> None:
    async def worker() -> None:
        for _ in range(requests // concurrency):
            if await post() != REPLY:
                raise RuntimeError("unexpected reply")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(kind: str, url: str, requests: int, concurrency: int) -> dict[str, float]:
    import httpx
    import inngest_mw_dev.engine  # noqa: F401  (what an engine process has loaded anyway)

    before = _rss_mib()
    headers = {"content-type": "application/json"}
    closers: list[Callable[[], Awaitable[None]]] = []
    if kind == "httpx":
        client = httpx.AsyncClient()
        closers.append(client.aclose)

        async def post() -> bytes:
            return (await client.post(url, content=BODY, headers=headers)).content

    elif kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        closers.append(session.close)

        async def post() -> bytes:
            async with session.post(url, data=BODY, headers=headers) as response:
                return await response.read()

    elif kind == "h11":
        from urllib.parse import urlsplit

        import h11

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = f"{parts.path}?{parts.query}"
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = []

        async def post() -> bytes:
            if not streams:
                reader, writer = await asyncio.open_connection(host, port)
                closers.append(functools.partial(_close, writer))
                streams.append((reader, writer, h11.Connection(h11.CLIENT)))
            reader, writer, conn = streams.pop()
            fields = [("Host", host), ("Content-Length", str(len(BODY))), *headers.items()]
            out = conn.send(h11.Request(method="POST", target=target, headers=fields)) or b""
            out += conn.send(h11.Data(data=BODY)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
            writer.write(out)
            chunks = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            conn.start_next_cycle()
            streams.append((reader, writer, conn))
            return b"".join(chunks)

    else:
        from inngest_mw_dev.appclient import AppClient

        ours = AppClient()
        closers.append(ours.aclose)

        async def post() -> bytes:
            return (await ours.post(url, BODY, headers, 30.0)).content

    imported = _rss_mib() - before
    await _drive(post, requests, concurrency)
    cpu = time.process_time()
    await _drive(post, requests, concurrency)
    per_request = (time.process_time() - cpu) / requests * 1e6
    for close in closers:
        await close()
    return {"cpu_us_per_request": round(per_request, 1), "import_mib": round(imported, 1)}


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=BODY, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the test app did not start")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_clients", description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    if args.measure:
        result = asyncio.run(_measure(args.measure, args.url, args.requests, args.concurrency))
        print(json.dumps(result))
        return 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_clients", "--serve", str(port)]
    )
    try:
        _wait_for(port)
        url = f"http://127.0.0.1:{port}/api/inngest?fnId=f&stepId=step"
        print("| client | CPU µs/request | import MiB |\n| --- | ---: | ---: |")
        for kind in CANDIDATES:
            command = [sys.executable, "-m", "benchmarks.http_clients", "--measure", kind]
            command += ["--url", url, "--requests", str(args.requests)]
            command += ["--concurrency", str(args.concurrency)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
            print(f"| {kind} | {result['cpu_us_per_request']} | {result['import_mib']} |")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
