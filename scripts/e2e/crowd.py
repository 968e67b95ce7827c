#!/usr/bin/env python3
"""crowd.py MODE HOST PORT ... — the clients scripts/fairness.sh crowds the ten slots with.

  keepalive HOST PORT CLIENTS REQUESTS PATH
      CLIENTS connections at once, each sending REQUESTS keep-alive GETs of PATH one after
      another (like an aiohttp pool). Prints `answered=N of M total=SECONDS last=SECONDS`;
      exit 0 when every request got a 200.
  slowread HOST PORT PATH RATE SECONDS [MARKER]
      GET PATH (creating the file MARKER once connected) with a 4 KiB receive buffer, reading RATE bytes a second, for at most SECONDS
      (or until the body is complete). Prints `bytes=N sha256=HEX complete=0|1 cut=0|1`.
  slowhead HOST PORT SECONDS [MARKER]
      Sends a request head one byte a second for at most SECONDS (creating the file MARKER once
      connected). Prints what came back.
  idle HOST PORT CLIENTS SECONDS
      CLIENTS keep-alive connections, one request each, then idle for SECONDS.

Every client is bounded in time; run it inside the test's network namespace.
"""
import asyncio
import hashlib
import socket
import sys
import time


async def one_client(host, port, requests, path, deadline, stats):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), deadline - time.monotonic())
    except Exception as e:  # noqa: BLE001 - reported as a failure
        stats["errors"].append(f"connect: {e}")
        return
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        for _ in range(requests):
            writer.write(req)
            left = deadline - time.monotonic()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), left)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = 0
            closing = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                if name.lower() == "connection" and "close" in value.lower():
                    closing = True
            await asyncio.wait_for(reader.readexactly(length), deadline - time.monotonic())
            stats["answered"] += status == 200
            stats["last"] = time.monotonic()
            if closing:
                # The server made room for a waiting client: reconnect, as a pool would.
                writer.close()
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), deadline - time.monotonic())
    except Exception as e:  # noqa: BLE001
        stats["errors"].append(repr(e))
    finally:
        writer.close()


async def keepalive(host, port, clients, requests, path):
    start = time.monotonic()
    stats = {"answered": 0, "last": start, "errors": []}
    deadline = start + 30
    await asyncio.gather(*(one_client(host, port, requests, path, deadline, stats) for _ in range(clients)))
    total = clients * requests
    print(f"answered={stats['answered']} of {total} total={time.monotonic() - start:.2f} "
          f"last={stats['last'] - start:.2f} errors={len(stats['errors'])} {stats['errors'][:2]}")
    return 0 if stats["answered"] == total else 1


def slowread(host, port, path, rate, seconds, marker=None):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect((host, port))
    if marker:
        open(marker, "w").close()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    cut = 0
    end = time.monotonic() + seconds
    chunk = max(1, rate // 10)
    while time.monotonic() < end:
        try:
            got = s.recv(chunk)
        except socket.timeout:
            continue
        except ConnectionResetError:
            cut = 1
            break
        if not got:
            break
        data += got
        time.sleep(0.1)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    complete = int(length is not None and len(body) == length)
    print(f"bytes={len(body)} sha256={hashlib.sha256(body).hexdigest()} complete={complete} cut={cut}")
    return 0


def slowhead(host, port, seconds, marker=None):
    s = socket.create_connection((host, port), timeout=5)
    if marker:
        open(marker, "w").close()
    head = f"GET /index.html HTTP/1.1\r\nHost: {host}\r\nX-Slow: {'a' * 64}\r\n\r\n".encode()
    s.setblocking(False)
    got = b""
    end = time.monotonic() + seconds
    for b in head:
        if time.monotonic() >= end:
            break
        try:
            s.send(bytes([b]))
            got += s.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            break
        if got:
            break
        time.sleep(1)
    print(f"answer={got[:40]!r}")
    return 0


def idle(host, port, clients, seconds):
    socks = []
    for _ in range(clients):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(f"GET /text/text.htm HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        socks.append(s)
    for s in socks:
        s.recv(65536)
    time.sleep(seconds)
    for s in socks:
        s.close()
    print(f"idle={clients}")
    return 0


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    a = sys.argv[4:]
    if mode == "keepalive":
        return asyncio.run(keepalive(host, port, int(a[0]), int(a[1]), a[2]))
    if mode == "slowread":
        return slowread(host, port, a[0], int(a[1]), float(a[2]), a[3] if len(a) > 3 else None)
    if mode == "slowhead":
        return slowhead(host, port, float(a[0]), a[1] if len(a) > 1 else None)
    if mode == "idle":
        return idle(host, port, int(a[0]), float(a[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
