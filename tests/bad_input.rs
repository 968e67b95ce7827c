//! Hostile and malformed input, one row per case with the status RFC 9112 / RFC 9110 and
//! docs/design.md call for. After every row the server still serves a normal request and no slot
//! is left behind.

mod common;

use common::{Opts, Response, Sim};
use smoltcp::time::Duration;

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// This status, then the connection may do anything.
    Status(u16),
}

const ROWS: &[(&str, &[u8], Want)] = &[
    ("whitespace before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", Want::Status(400)),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n", Want::Status(400)),
    ("bare CR in header", b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", Want::Status(400)),
    ("bare CR in request line", b"GET /\r HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("NUL in header value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", Want::Status(400)),
    ("control char in value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", Want::Status(400)),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", Want::Status(400)),
    ("empty header name", b"GET / HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n", Want::Status(400)),
    ("invalid Content-Length", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", Want::Status(400)),
    ("negative Content-Length", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n", Want::Status(400)),
    ("signed Content-Length", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n", Want::Status(400)),
    (
        "conflicting Content-Length",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        Want::Status(400),
    ),
    ("conflicting list", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\nab", Want::Status(400)),
    (
        "Content-Length that wraps u64",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551617\r\n\r\n",
        Want::Status(400),
    ),
    (
        "huge Content-Length on chat",
        b"POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 18446744073709551615\r\n\r\n",
        Want::Status(413),
    ),
    (
        "Content-Length with Transfer-Encoding",
        b"POST /chat HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Want::Status(400),
    ),
    (
        "unknown transfer coding",
        b"POST /chat HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        Want::Status(501),
    ),
    (
        "chunked not last",
        b"POST /chat HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        Want::Status(501),
    ),
    (
        "chunked chat body",
        b"POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntext=\r\n0\r\n\r\n",
        Want::Status(411),
    ),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", Want::Status(505)),
    ("HTTP/3", b"GET / HTTP/3\r\nHost: t\r\n\r\n", Want::Status(505)),
    ("HTTP/0.8", b"GET / HTTP/0.8\r\nHost: t\r\n\r\n", Want::Status(505)),
    ("lowercase version", b"GET / http/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("garbage version", b"GET / HTTP/one\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("missing target", b"GET HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(501)),
    ("absurd method", b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX / HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(501)),
    ("method with bad chars", b"G(E)T / HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", Want::Status(400)),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Want::Status(400)),
    ("dot-dot escapes", b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(404)),
    ("encoded dot-dot", b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(404)),
    ("encoded NUL", b"GET /index.html%00.jpg HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("backslash", b"GET /..\\..\\etc\\passwd HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("encoded backslash", b"GET /..%5c..%5cetc HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("overlong UTF-8 dot", b"GET /%c0%ae%c0%ae/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("bad escape", b"GET /%G0 HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("asterisk target", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("OPTIONS * (the server as a whole)", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(200)),
    ("raw space in target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", Want::Status(400)),
    ("TLS handshake", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", Want::Status(400)),
    ("binary line", b"\x00\x01\x02\x03\r\n\r\n", Want::Status(400)),
    // RFC 9112 2.2: empty lines before a request line are ignored; none follows, so the head
    // deadline ends it.
    ("empty lines only", b"\r\n\r\n\r\n", Want::Status(408)),
];

/// Sends `request`, returns the first response's status.
fn status_of(sim: &mut Sim, request: &[u8]) -> Option<u16> {
    let raw = sim.exchange(request);
    Response::parse(&raw).map(|r| r.status)
}

fn still_serves(sim: &mut Sim, after: &str) {
    let r = sim.get("/text/text.htm");
    assert_eq!(r.status, 200, "not serving after {after}");
}

#[test]
fn each_bad_input_gets_its_status_and_the_server_goes_on() {
    let mut sim: Sim = Sim::new();
    for (name, request, want) in ROWS {
        let got = status_of(&mut sim, request);
        match want {
            Want::Status(s) => assert_eq!(got, Some(*s), "{name}"),
        }
        still_serves(&mut sim, name);
    }
    sim.advance(Duration::from_secs(15));
    assert_eq!(sim.free_slots(), 10, "a slot leaked");
}

#[test]
fn oversized_line_head_and_body() {
    let mut sim: Sim = Sim::new();
    let line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "x".repeat(5000));
    assert_eq!(status_of(&mut sim, line.as_bytes()), Some(414));
    let head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "y".repeat(5000)
    );
    assert_eq!(status_of(&mut sim, head.as_bytes()), Some(431));
    let body = "text=".to_string() + &"z".repeat(5000);
    let post = format!(
        "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status_of(&mut sim, post.as_bytes()), Some(413));
    still_serves(&mut sim, "oversized input");
    sim.advance(Duration::from_secs(15));
    assert_eq!(sim.free_slots(), 10);
}

#[test]
fn a_valid_request_one_byte_at_a_time_is_served() {
    let mut sim: Sim = Sim::new();
    let i = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Opts {
            gap: Some(Duration::from_millis(50)),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(30)));
    assert_eq!(Response::parse(&sim.conns[i].received).unwrap().status, 200);
}

#[test]
fn garbage_pipelined_behind_a_valid_request() {
    let mut sim: Sim = Sim::new();
    let i = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\n\r\n\x16\x03\x01garbage\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(30)));
    let all = Response::parse_all(&sim.conns[i].received);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400]);
    assert_eq!(all[1].header("connection"), Some("close"));
    // A valid request behind a rejected one is not answered: the connection closed.
    let i = sim.open(
        b"BREW / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(30)));
    let statuses: Vec<u16> = Response::parse_all(&sim.conns[i].received)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [501]);
}

#[test]
fn random_bytes_never_hurt_the_server() {
    let mut sim: Sim = Sim::new();
    let mut x: u32 = 0x2545_f491;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for round in 0..60 {
        let len = (next() % 3000) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the rounds end like a head, so the parser has to judge them.
        if round % 2 == 0 {
            bytes.extend_from_slice(b"\r\n\r\n");
        }
        sim.conns.clear();
        let i = sim.open(&bytes, Opts::default());
        assert!(
            sim.run(Duration::from_secs(30)),
            "round {round}: connection never ended"
        );
        if let Some(r) = Response::parse(&sim.conns[i].received) {
            assert!(
                [400, 404, 405, 408, 414, 431, 501, 505].contains(&r.status),
                "round {round}: {}",
                r.status
            );
        }
        if round % 10 == 0 {
            still_serves(&mut sim, "random bytes");
        }
    }
    still_serves(&mut sim, "random bytes");
    sim.advance(Duration::from_secs(15));
    assert_eq!(sim.free_slots(), 10);
}
