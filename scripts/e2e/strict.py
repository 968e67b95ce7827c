#!/usr/bin/env python3
"""Strict, independent checks of raw responses captured from the server.

Each case sends one raw request (Connection: close), reads the raw response bytes to the end,
and parses them with httptools (llhttp, strict) as the response to that request. The case's own
asserts run on what llhttp parsed (status, headers, body), and httplint lints the message;
a BAD-level note fails the case. Usage: strict.py HOST PORT FS_IMAGE_DIR. Prints one line per
case and exits 1 if any failed.
"""

import os
import socket
import sys

import httplint
import httptools

HOST, PORT, IMAGE = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def raw_exchange(request: bytes) -> bytes:
    with socket.create_connection((HOST, PORT), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


class Parsed:
    def __init__(self):
        self.headers = []
        self.body = b""
        self.complete = False
        self.status = None

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.complete = True

    def header(self, name):
        for n, v in self.headers:
            if n.decode().lower() == name:
                return v.decode()
        return None


def parse(raw: bytes, head_request: bool) -> Parsed:
    p = Parsed()
    parser = httptools.HttpResponseParser(p)
    if head_request:
        # llhttp cannot know a HEAD answer has no body; feed the head only.
        raw = raw[: raw.index(b"\r\n\r\n") + 4]
        p.complete = True
    parser.feed_data(raw)
    p.status = parser.get_status_code()
    return p


def lint(raw: bytes, p: Parsed, method: str, request: bytes):
    """httplint's BAD notes for the response, linted together with its request."""
    head, _, _ = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    r_method, uri, version = lines[0].split(b" ", 2) if lines[0].count(b" ") >= 2 else (b"GET", b"/", b"HTTP/1.1")
    req = httplint.HttpRequestLinter()
    req.process_request_topline(r_method, b"http://%s%s" % (HOST.encode(), uri), version)
    req.process_headers([tuple(x.split(b": ", 1)) for x in lines[1:] if b": " in x])
    req.finish_content(True)
    linter = httplint.HttpResponseLinter(_related=req, no_content=(method == "HEAD"))
    first = raw.split(b"\r\n", 1)[0].split(b" ", 2)
    linter.process_response_topline(first[0], first[1], first[2] if len(first) > 2 else b"")
    linter.process_headers(p.headers)
    linter.feed_content(p.body)
    linter.finish_content(True)
    # STATUS_* notes restate what an error status means (e.g. "the server won't accept a URI
    # this long"); for the error cases here that status is the expected answer.
    return [
        n
        for n in linter.notes
        if n.level.name == "BAD" and not n.__class__.__name__.startswith("STATUS_")
    ]


def file_bytes(path):
    with open(os.path.join(IMAGE, path.lstrip("/")), "rb") as f:
        return f.read()


def req(method, path, extra=""):
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


video = file_bytes("/video/Planeta.mp4")
n = len(video)
form = b"name=strict&text=hello+strict"
post = (
    b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(form), form)
)

etag = parse(raw_exchange(req("GET", "/img/perro.jpg")), False).header("etag")

CASES = [
    ("304 on the current ETag", "GET", req("GET", "/img/perro.jpg", f"If-None-Match: {etag}\r\n"),
     lambda p: p.status == 304 and p.body == b"" and p.header("etag") == etag),
    ("GET / 200", "GET", req("GET", "/"), lambda p: p.status == 200 and p.body == file_bytes("/index.html")),
    ("HEAD image 200", "HEAD", req("HEAD", "/img/car.jpeg"),
     lambda p: p.status == 200 and p.header("content-length") == str(len(file_bytes("/img/car.jpeg")))),
    ("404 has the 404 page", "GET", req("GET", "/nope"), lambda p: p.status == 404 and p.body == file_bytes("/404.html")),
    ("405 has Allow", "POST", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
     lambda p: p.status == 405 and p.header("allow") == "GET, HEAD"),
    ("206 Content-Range right", "GET", req("GET", "/video/Planeta.mp4", "Range: bytes=100-199\r\n"),
     lambda p: p.status == 206 and p.header("content-range") == f"bytes 100-199/{n}" and p.body == video[100:200]),
    ("206 suffix range", "GET", req("GET", "/video/Planeta.mp4", "Range: bytes=-10\r\n"),
     lambda p: p.status == 206 and p.header("content-range") == f"bytes {n - 10}-{n - 1}/{n}" and p.body == video[-10:]),
    ("416 has */len", "GET", req("GET", "/video/Planeta.mp4", f"Range: bytes={n}-\r\n"),
     lambda p: p.status == 416 and p.header("content-range") == f"bytes */{n}"),
    ("301 to the directory", "GET", req("GET", "/img"), lambda p: p.status == 301 and p.header("location") == "/img/"),
    ("gzip representation", "GET", req("GET", "/", "Accept-Encoding: gzip\r\n"),
     lambda p: p.status == 200 and p.header("content-encoding") == "gzip" and p.header("vary") == "Accept-Encoding"),
    ("chat post 201", "POST", post, lambda p: p.status == 201 and (p.header("location") or "").startswith("/chat?since=")),
    ("chat get 200 JSON", "GET", req("GET", "/chat?since=0"),
     lambda p: p.status == 200 and p.header("content-type") == "application/json" and b"hello strict" in p.body),
    ("400 on a bad request", "GET", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", lambda p: p.status == 400),
    ("505 on HTTP/2.0", "GET", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", lambda p: p.status == 505),
    ("501 on an unknown method", "BREW", b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", lambda p: p.status == 501),
    ("414 readable", "GET", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", lambda p: p.status == 414),
]

failed = 0
for name, method, request, check in CASES:
    raw = raw_exchange(request)
    try:
        p = parse(raw, method == "HEAD")
        ok = p.complete and check(p)
        bad = lint(raw, p, method, request)
        why = "" if ok else f"unexpected: status {p.status}, complete {p.complete}"
        if bad:
            ok = False
            why = "; ".join(f"BAD {b.__class__.__name__}: {b.summary}" for b in bad)
    except httptools.HttpParserError as e:
        ok, why = False, f"llhttp rejected the response: {e}"
    print(("ok   - " if ok else "FAIL - ") + f"strict: {name}" + ("" if ok else f": {why}"))
    failed += not ok
print(f"{len(CASES) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
