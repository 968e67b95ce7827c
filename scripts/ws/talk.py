#!/usr/bin/env python3
"""talk.py MODE ... - WebSocket clients for scripts/ws.sh and scripts/bench-ws.sh, on Python's
`websockets` library (a client nobody here wrote). Each prints `info: ...` lines and exits 0 when
every check held, 1 otherwise (the reason on stdout).

  talk.py chat URL N       N posts each way on the chat (ws://.../chat/ws): each post a JSON text
                           {"name","text"} (every third one sent in three fragments), each must
                           come back as a message {"id","name","text"}, byte-exact, in order,
                           ids rising; at most 16 in flight (the ring keeps 64)
  talk.py echo URL N       N messages each way on an echo (examples/echo.rs /echo): text and
                           binary, 0 to 1,800 bytes, every third fragmented; each must come back
                           byte-exact and in order
  talk.py bench URL SECS   64-byte binary echo for SECS seconds, 32 in flight: prints
                           `rate: MSGS_PER_SEC`
  talk.py serve HOST PORT  the same echo as a websockets server (the benchmark's comparison)
"""
import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

OPTS = dict(compression=None, ping_interval=None, max_size=1 << 20, open_timeout=10, close_timeout=5)


def fail(why):
    print(why)
    sys.exit(1)


async def chat(url, n):
    tag = f"py{time.monotonic_ns() % 100000}"
    async with connect(url, **OPTS) as ws:
        sent = []
        got = 0
        last_id = 0
        window = asyncio.Semaphore(16)

        async def reader():
            nonlocal got, last_id
            while got < n:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if "error" in m:
                    fail(f"server error: {m}")
                if m.get("name") != tag:
                    continue  # someone else's message
                want = sent[got]
                if m["text"] != want:
                    fail(f"message {got}: got {m['text']!r}, want {want!r}")
                if m["id"] <= last_id:
                    fail(f"ids not rising: {m['id']} after {last_id}")
                last_id = m["id"]
                got += 1
                window.release()

        task = asyncio.create_task(reader())
        t0 = time.monotonic()
        for i in range(n):
            await window.acquire()
            text = f"{i} héllo \"quoted\" \\ <b>{'x' * (i % 200)}"
            sent.append(text)
            body = json.dumps({"name": tag, "text": text})
            if i % 3 == 0:
                third = len(body) // 3
                await ws.send([body[:third], body[third : 2 * third], body[2 * third :]])
            else:
                await ws.send(body)
        await asyncio.wait_for(task, 30)
        dt = time.monotonic() - t0
        await ws.close()
        code = ws.close_code
    print(f"info: {n} posts in and {n} messages out, byte-exact and in order, in {dt:.2f} s; close code {code}")
    if code != 1000:
        fail(f"close code {code}, want 1000 (echoed)")


async def echo(url, n):
    async with connect(url, **OPTS) as ws:
        sent = []
        window = asyncio.Semaphore(8)
        got = 0

        async def reader():
            nonlocal got
            while got < n:
                m = await asyncio.wait_for(ws.recv(), 10)
                if m != sent[got]:
                    fail(f"message {got}: {len(m)} bytes back, not the {len(sent[got])} sent")
                got += 1
                window.release()

        task = asyncio.create_task(reader())
        for i in range(n):
            await window.acquire()
            size = (i * 37) % 1801
            if i % 2:
                msg = bytes((i + k) % 256 for k in range(size))
            else:
                msg = "".join(chr(0x41 + (i + k) % 26) if k % 7 else "ñ" for k in range(size // 2))
            sent.append(msg)
            if i % 3 == 0 and len(msg) >= 3:
                third = len(msg) // 3
                await ws.send([msg[:third], msg[third : 2 * third], msg[2 * third :]])
            else:
                await ws.send(msg)
        await asyncio.wait_for(task, 30)
        await ws.close()
    print(f"info: {n} messages each way (text and binary, 0-1800 bytes, a third fragmented), byte-exact")


async def bench(url, secs):
    msg = bytes(range(64))
    async with connect(url, **OPTS) as ws:
        stop = time.monotonic() + secs
        done = 0
        inflight = 0
        while inflight < 32:
            await ws.send(msg)
            inflight += 1
        t0 = time.monotonic()
        while True:
            m = await asyncio.wait_for(ws.recv(), 10)
            if m != msg:
                fail("echo not byte-exact")
            done += 1
            inflight -= 1
            if time.monotonic() < stop:
                await ws.send(msg)
                inflight += 1
            elif inflight == 0:
                break
        dt = time.monotonic() - t0
    print(f"rate: {done / dt:.0f}")


async def server(host, port):
    async def handler(ws):
        async for m in ws:
            await ws.send(m)

    async with serve(handler, host, port, compression=None, ping_interval=None):
        await asyncio.get_running_loop().create_future()


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    mode, a, b = sys.argv[1:4]
    run = {
        "chat": lambda: chat(a, int(b)),
        "echo": lambda: echo(a, int(b)),
        "bench": lambda: bench(a, float(b)),
        "serve": lambda: server(a, int(b)),
    }.get(mode)
    if run is None:
        print(__doc__)
        sys.exit(2)
    try:
        asyncio.run(run())
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
