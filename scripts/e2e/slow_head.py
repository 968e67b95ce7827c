#!/usr/bin/env python3
"""slow_head.py HOST PORT [MARKER] — a client that sends its request head one byte a second.

Sends `GET /index.html HTTP/1.1` + Host + blank line, one byte per second (the whole head
would take ~45 s), and reads whatever the server answers meanwhile. Prints one line:

    status=408 after=5.03 sent=6 line='HTTP/1.1 408 Request Timeout'

`after` is the time in seconds from the first byte sent to the end of the status line
received; `sent` is how many head bytes had been sent by then. If MARKER is given, that file
is created right after the first byte is sent (so a caller can time a concurrent request).
Gives up after LIMIT seconds (env SLOW_LIMIT, default 12): prints status=none and exits 1.
Exit status 0 when a status line was read (whatever the code), 1 otherwise.
Run it inside the test's network namespace (scripts/e2e.sh does).
"""
import os
import select
import socket
import sys
import time


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: slow_head.py HOST PORT [MARKER]", file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    marker = sys.argv[3] if len(sys.argv) > 3 else None
    limit = float(os.environ.get("SLOW_LIMIT", "12"))
    head = f"GET /index.html HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    sock = socket.create_connection((host, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    got = b""
    sent = 0
    send_ok = True
    first = None
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if first is not None and now - first > limit:
            print(f"status=none after={now - first:.2f} sent={sent} got={got[:80]!r}")
            return 1
        if send_ok and sent < len(head) and now >= next_send:
            try:
                sock.send(head[sent:sent + 1])
                sent += 1
            except OSError as e:  # the server closed on us: keep reading what it sent
                send_ok = False
                print(f"note: send failed after {sent} bytes: {e}", file=sys.stderr)
            if first is None:
                first = time.monotonic()
                if marker:
                    open(marker, "w").close()
            next_send += 1.0
        wait = max(0.0, min(next_send - time.monotonic(), 0.1))
        r, _, _ = select.select([sock], [], [], wait)
        if r:
            try:
                chunk = sock.recv(4096)
            except OSError as e:
                print(f"status=none after={time.monotonic() - first:.2f} sent={sent} error={e}")
                return 1
            if not chunk:
                print(f"status=none after={time.monotonic() - first:.2f} sent={sent} closed, got={got[:80]!r}")
                return 1
            got += chunk
            if b"\r\n" in got:
                line = got.split(b"\r\n", 1)[0].decode("latin-1")
                parts = line.split(" ", 2)
                code = parts[1] if len(parts) > 1 else "?"
                print(f"status={code} after={time.monotonic() - first:.2f} sent={sent} line={line!r}")
                sock.close()
                return 0


if __name__ == "__main__":
    sys.exit(main())
