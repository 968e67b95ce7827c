#!/usr/bin/env python3
"""listeners.py MODE HOST PORT N SECONDS — chat listeners on /chat/events, as browsers are.

Each listener opens `GET /chat/events?since=S` (S: the newest id when the run starts), prints
nothing while it reads events, and when the server closes the stream it reopens it with
`Last-Event-ID: <last id seen>` after 250 ms, as EventSource does. A refused stream (503: the
server's stream cap) falls back to one `GET /chat?since=` poll a second, as the chat page does,
and tries the stream again. Everything is bounded by SECONDS.

  push    N listeners; once all are open, one message is posted; prints the latency from the
          post to each listener's copy of it, and `max_ms=...`. Exit 0 when every listener got it.
  crowd   N listeners for SECONDS; a message is posted every 0.5 s and, 1 s in, a visitor GETs
          `/` (timed). Prints `visitor_s=...` and, per listener, whether it saw every posted id
          exactly once. Exit 0 when all did.
"""
import json
import socket
import sys
import threading
import time


def request(host, port, raw, timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def newest(host, port):
    status, body = request(host, port, f"GET /chat?since=0 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    return json.loads(body)["next"]


def post(host, port, text):
    body = f"name=lis&text={text}".encode()
    raw = (f"POST /chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    status, body = request(host, port, raw)
    assert status == 201, status
    return json.loads(body)["id"]


class Listener(threading.Thread):
    def __init__(self, host, port, since, end):
        super().__init__(daemon=True)
        self.host, self.port, self.last, self.end = host, port, since, end
        self.got = []          # (id, arrival time)
        self.open = threading.Event()
        self.streams = 0
        self.polls = 0

    def run(self):
        while time.time() < self.end:
            try:
                if not self.stream():
                    self.poll()
                    time.sleep(1)
            except OSError:
                time.sleep(0.25)

    def take(self, mid, at):
        if mid > self.last:
            self.last = mid
        self.got.append((mid, at))

    def poll(self):
        self.polls += 1
        status, body = request(self.host, self.port,
                               f"GET /chat?since={self.last} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
        if status == 200:
            for m in json.loads(body)["messages"]:
                self.take(m["id"], time.time())

    def stream(self):
        s = socket.create_connection((self.host, self.port), timeout=5)
        s.sendall((f"GET /chat/events?since={self.last} HTTP/1.1\r\nHost: {self.host}\r\n"
                   f"Last-Event-ID: {self.last}\r\nAccept: text/event-stream\r\n\r\n").encode())
        s.settimeout(0.25)
        buf = b""
        headed = False
        try:
            while time.time() < self.end:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
                if not headed:
                    if b"\r\n\r\n" not in buf:
                        continue
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    if head.split()[1] != b"200":
                        return False
                    headed = True
                    self.streams += 1
                    self.open.set()
                while b"\n\n" in buf:
                    block, _, buf = buf.partition(b"\n\n")
                    for line in block.decode().splitlines():
                        if line.startswith("data: ") and b"event: " not in block:
                            self.take(json.loads(line[6:])["id"], time.time())
        finally:
            s.close()
        time.sleep(0.25)
        return headed


def main():
    mode, host, port, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    end = time.time() + secs
    since = newest(host, port)
    ls = [Listener(host, port, since, end) for _ in range(n)]
    for l in ls:
        l.start()
    if mode == "push":
        for l in ls:
            l.open.wait(timeout=5)
        time.sleep(0.3)
        t0 = time.time()
        mid = post(host, port, "pushed")
        lat = []
        while time.time() < end and len(lat) < n:
            lat = [next((at for i, at in l.got if i == mid), None) for l in ls]
            lat = [x for x in lat if x is not None]
            time.sleep(0.01)
        ms = [round((x - t0) * 1000, 1) for x in lat]
        print(f"got={len(ms)} of {n} latencies_ms={ms} max_ms={max(ms) if ms else None}")
        return 0 if len(ms) == n else 1
    posted = []
    visitor = None
    start = time.time()
    while time.time() < end - 2:
        posted.append(post(host, port, f"crowd{len(posted)}"))
        if visitor is None and time.time() - start > 1:
            t = time.time()
            status, _ = request(host, port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(), timeout=10)
            visitor = time.time() - t if status == 200 else None
        time.sleep(0.5)
    for l in ls:
        l.join(timeout=secs)
    bad = 0
    for k, l in enumerate(ls):
        ids = [i for i, _ in l.got]
        ok = ids == posted
        bad += not ok
        print(f"listener {k}: {'ok' if ok else 'WRONG'} streams={l.streams} polls={l.polls} ids={ids if not ok else len(ids)}")
    print(f"visitor_s={visitor} posted={len(posted)} wrong={bad}")
    return 0 if bad == 0 and visitor is not None and visitor <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
