//! WebSocket (RFC 6455) on the simulated network: the handshake's rows (101 with the right
//! accept key, 400, 400 with the version, 403 from the handler), every close code the server
//! sends (1000 echoed, 1001, 1002, 1007, 1009), fragments with a ping between them, pings and
//! pongs, masks, the heartbeat and its missing pong, the send deadline, the cap shared with
//! event streams (503), eviction first with 1001, and the chat over `/chat/ws` to six sockets
//! with one not reading.

mod common;

use common::handlers::ws_sim;
use common::ws::{self, close, frame, frames, frames_after_head, split, text, upgrade};
use common::{Opts, Response, Sim};
use smolhttpd::Config;
use smoltcp::time::Duration;

const MASK: Option<[u8; 4]> = Some([0xa1, 0x02, 0xc3, 0x44]);

/// Opens `/ws/echo` and waits for the 101 and the greeting.
fn open_echo(sim: &mut Sim) -> usize {
    let i = sim.open(&upgrade("/ws/echo", ""), Opts::default());
    sim.advance(Duration::from_millis(50));
    let (head, _) = split(&sim.conns[i].received);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    i
}

/// The frames connection `i` got after its 101.
fn got(sim: &Sim, i: usize) -> Vec<ws::Frame> {
    frames_after_head(&sim.conns[i].received)
}

/// The close code of the last frame of `i`, which must be a close frame.
fn closed_with(sim: &Sim, i: usize) -> u16 {
    let f = got(sim, i);
    let last = f.last().expect("frames");
    assert_eq!(last.1, ws::CLOSE, "{f:?}");
    ws::code(&last.2)
}

#[test]
fn the_handshake_rows() {
    let (mut sim, _) = ws_sim(Config::new());
    // RFC 6455 1.3's key, and nothing else in the head but what it needs.
    let raw = sim.exchange(&upgrade("/ws/echo", "Connection: close\r\n"));
    let (head, rest) = split(&raw);
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            ws::ACCEPT
        )
    );
    assert_eq!(frames(rest)[0], (true, ws::TEXT, b"hello".to_vec()));
    let row = |sim: &mut Sim, req: String| {
        let raw = sim.exchange(req.as_bytes());
        Response::parse(&raw).unwrap_or_else(|| panic!("{req}: {raw:?}"))
    };
    let base = "GET /ws/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n";
    let good = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    let up = "Connection: Upgrade\r\n";
    let key = format!("Sec-WebSocket-Key: {}\r\n", ws::KEY);
    for (what, req) in [
        ("no key", format!("{base}{up}{good}\r\n")),
        (
            "a short key",
            format!("{base}{up}{good}Sec-WebSocket-Key: AAAAAAAAAAAAAAAA\r\n\r\n"),
        ),
        (
            "a key not base64",
            format!("{base}{up}{good}Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n\r\n"),
        ),
        (
            "no Upgrade",
            format!("{base}{up}Sec-WebSocket-Version: 13\r\n{key}\r\n"),
        ),
        ("no Connection: Upgrade", format!("{base}{good}{key}\r\n")),
        (
            "HTTP/1.0",
            format!("GET /ws/echo HTTP/1.0\r\n{up}{good}{key}\r\n"),
        ),
        (
            "a body (it would be read as frames here and as a body by a proxy)",
            format!("{base}{up}{good}{key}Content-Length: 6\r\n\r\nhello!"),
        ),
    ] {
        let r = row(&mut sim, req);
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.header("sec-websocket-version"), None, "{what}");
        assert_eq!(r.header("upgrade"), None, "{what}");
    }
    // A version mismatch says which version the server speaks (RFC 6455 4.4).
    for v in ["8", "", "13, 8"] {
        let req =
            format!("{base}{up}Upgrade: websocket\r\nSec-WebSocket-Version: {v}\r\n{key}\r\n");
        let r = row(&mut sim, req);
        assert_eq!(r.status, 400, "version {v:?}");
        assert_eq!(
            r.header("sec-websocket-version"),
            Some("13"),
            "version {v:?}"
        );
    }
    // Connection may list other tokens, in any case.
    let req = format!(
        "GET /ws/echo HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, UPGRADE\r\n\
         Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n{key}\r\n"
    );
    let i = sim.open(req.as_bytes(), Opts::default());
    sim.advance(Duration::from_millis(50));
    assert!(split(&sim.conns[i].received).0.starts_with("HTTP/1.1 101 "));
    sim.clear_clients();
    // The handler may refuse an Origin.
    let r = row(
        &mut sim,
        format!("{base}{up}{good}{key}Origin: http://evil.example\r\n\r\n"),
    );
    assert_eq!(r.status, 403);
    // A route that does not take WebSockets answers as ever; other methods are 405.
    let r = row(
        &mut sim,
        format!("GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{up}{good}{key}\r\n"),
    );
    assert_eq!(r.status, 200);
    let r = row(
        &mut sim,
        format!("POST /ws/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n{up}{good}{key}\r\n"),
    );
    assert_eq!(r.status, 405);
}

#[test]
fn echo_text_and_binary_with_frames_pipelined_after_the_head() {
    let (mut sim, closes) = ws_sim(Config::new());
    // The handshake and two frames in one write: the frames wait in the buffer for the 101.
    let mut req = upgrade("/ws/echo", "");
    req.extend(text("hola ñ"));
    req.extend(frame(true, ws::BINARY, &[0, 1, 2, 255], MASK));
    let i = sim.open(&req, Opts::default());
    sim.advance(Duration::from_millis(50));
    let big = vec![b'x'; smolhttpd::ws::max_message(smolhttpd::config::REQUEST_BUF)];
    sim.send(i, &frame(true, ws::BINARY, &big, MASK));
    sim.advance(Duration::from_millis(50));
    sim.send(i, &close(1000));
    assert!(sim.run(Duration::from_secs(5)));
    let f = got(&sim, i);
    assert_eq!(f[0], (true, ws::TEXT, b"hello".to_vec()));
    assert_eq!(f[1], (true, ws::TEXT, "hola ñ".as_bytes().to_vec()));
    assert_eq!(f[2], (true, ws::BINARY, vec![0, 1, 2, 255]));
    assert_eq!(f[3], (true, ws::BINARY, big));
    // The close is answered with the same code, and the slot is free again.
    assert_eq!(f[4], (true, ws::CLOSE, 1000u16.to_be_bytes().to_vec()));
    assert_eq!(f.len(), 5);
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.free_slots(), smolhttpd::SLOTS);
    assert_eq!(*closes.borrow(), [1000]);
}

#[test]
fn fragments_are_reassembled_with_control_frames_between_them() {
    let (mut sim, _) = ws_sim(Config::new());
    let i = open_echo(&mut sim);
    // "héllo wörld" cut inside a character, a ping and a pong between the pieces.
    let msg = "héllo wörld".as_bytes();
    sim.send(i, &frame(false, ws::TEXT, &msg[..2], MASK));
    sim.send(i, &frame(true, ws::PING, b"are you there", MASK));
    sim.send(i, &frame(false, ws::CONT, &msg[2..8], MASK));
    sim.send(i, &frame(true, ws::PONG, b"ignored", MASK));
    sim.send(i, &frame(true, ws::CONT, &msg[8..], MASK));
    // An empty ping too, then a binary message in fragments of one byte.
    sim.send(i, &frame(true, ws::PING, b"", MASK));
    sim.send(i, &frame(false, ws::BINARY, b"a", MASK));
    for b in [b"b", b"c"] {
        sim.send(i, &frame(false, ws::CONT, b, MASK));
    }
    sim.send(i, &frame(true, ws::CONT, b"", MASK));
    sim.advance(Duration::from_millis(100));
    let f = got(&sim, i);
    assert_eq!(
        f[1..],
        [
            (true, ws::PONG, b"are you there".to_vec()),
            (true, ws::TEXT, msg.to_vec()),
            (true, ws::PONG, vec![]),
            (true, ws::BINARY, b"abc".to_vec()),
        ]
    );
    // Still open.
    sim.send(i, &text("again"));
    sim.advance(Duration::from_millis(50));
    assert_eq!(got(&sim, i).last().unwrap().2, b"again");
}

/// Each broken frame is answered with its close code, the connection ends, the slot is free.
#[test]
fn every_close_code() {
    let limit = smolhttpd::ws::max_message(smolhttpd::config::REQUEST_BUF);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", frame(true, ws::TEXT, b"hi", None), 1002),
        (
            "reserved bit",
            {
                let mut f = text("hi");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        ("reserved opcode", frame(true, 3, b"hi", MASK), 1002),
        (
            "continuation first",
            frame(true, ws::CONT, b"hi", MASK),
            1002,
        ),
        (
            "text inside a fragmented message",
            {
                let mut f = frame(false, ws::TEXT, b"a", MASK);
                f.extend(text("b"));
                f
            },
            1002,
        ),
        ("fragmented ping", frame(false, ws::PING, b"", MASK), 1002),
        (
            "ping over 125",
            frame(true, ws::PING, &[0; 126], MASK),
            1002,
        ),
        (
            "close of one byte",
            frame(true, ws::CLOSE, &[3], MASK),
            1002,
        ),
        ("close code 1005", close(1005), 1002),
        (
            "close reason not UTF-8",
            frame(true, ws::CLOSE, &[3, 232, 0xff], MASK),
            1007,
        ),
        (
            "text not UTF-8",
            frame(true, ws::TEXT, &[b'a', 0xc3], MASK),
            1007,
        ),
        (
            "text not UTF-8 across fragments",
            {
                let mut f = frame(false, ws::TEXT, &[0xe2, 0x82], MASK);
                f.extend(frame(true, ws::CONT, b"x", MASK));
                f
            },
            1007,
        ),
        (
            "one byte over the buffer",
            frame(true, ws::BINARY, &vec![1; limit + 1], MASK),
            1009,
        ),
        (
            "fragments over the buffer",
            {
                let mut f = frame(false, ws::BINARY, &vec![1; limit], MASK);
                f.extend(frame(true, ws::CONT, b"x", MASK));
                f
            },
            1009,
        ),
        (
            "a 2^40-byte frame",
            {
                let mut f = vec![0x82, 0xff];
                f.extend((1u64 << 40).to_be_bytes());
                f.extend([1, 2, 3, 4]);
                f
            },
            1009,
        ),
        ("close code 1006 (never sent)", close(1006), 1002),
        ("close code 1015 (never sent)", close(1015), 1002),
        ("close code 999", close(999), 1002),
        (
            "a top bit in a 64-bit length",
            {
                let mut f = vec![0x82, 0xff];
                f.extend((1u64 << 63).to_be_bytes());
                f.extend([1, 2, 3, 4]);
                f
            },
            1002,
        ),
        ("client going away", close(1001), 1001),
        ("service restart (IANA 1012)", close(1012), 1012),
        ("client done", close(1000), 1000),
        ("private code", close(4000), 4000),
    ];
    let (mut sim, closes) = ws_sim(Config::new());
    for (what, bytes, code) in &cases {
        sim.clear_clients();
        let i = open_echo(&mut sim);
        sim.send(i, bytes);
        assert!(sim.run(Duration::from_secs(5)), "{what}: still open");
        assert_eq!(closed_with(&sim, i), *code, "{what}");
        // Nothing was echoed.
        assert_eq!(got(&sim, i).len(), 2, "{what}: {:?}", got(&sim, i));
        sim.advance(Duration::from_millis(50));
        assert_eq!(sim.free_slots(), smolhttpd::SLOTS, "{what}");
        assert_eq!(closes.borrow().last(), Some(code), "{what}");
    }
    // A peer that just hangs up (FIN, no close frame).
    sim.clear_clients();
    let i = open_echo(&mut sim);
    sim.close_client(i);
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.free_slots(), smolhttpd::SLOTS);
    assert_eq!(closes.borrow().last(), Some(&1006));
}

#[test]
fn an_idle_socket_is_pinged_and_closed_without_a_pong() {
    let (mut sim, closes) = ws_sim(Config::new());
    let quiet = open_echo(&mut sim);
    let answers = open_echo(&mut sim);
    sim.advance(Duration::from_millis(14_800));
    assert_eq!(got(&sim, quiet).len(), 1, "no ping before the heartbeat");
    sim.advance(Duration::from_millis(400));
    assert_eq!(got(&sim, quiet)[1], (true, ws::PING, vec![]));
    assert_eq!(got(&sim, answers)[1], (true, ws::PING, vec![]));
    sim.send(answers, &frame(true, ws::PONG, b"", MASK));
    // A heartbeat after the ping: the silent one is closed with 1001, the other pinged again.
    sim.advance(Duration::from_millis(14_600));
    assert_eq!(got(&sim, quiet).len(), 2);
    sim.advance(Duration::from_millis(400));
    assert_eq!(closed_with(&sim, quiet), 1001);
    assert!(sim.conns[quiet].ended);
    // The one that answered is pinged a heartbeat after its pong, and stays.
    sim.advance(Duration::from_secs(1));
    assert_eq!(got(&sim, answers)[2], (true, ws::PING, vec![]));
    assert_eq!(got(&sim, answers).len(), 3);
    assert!(!sim.conns[answers].ended);
    assert_eq!(*closes.borrow(), [1001]);
}

#[test]
fn a_socket_that_stops_reading_meets_the_send_deadline() {
    let (mut sim, closes) = ws_sim(Config::new());
    let i = sim.open(
        &upgrade("/ws/echo", ""),
        Opts {
            rx_buffer: Some(4096),
            ..Opts::default()
        },
    );
    sim.advance(Duration::from_millis(50));
    sim.set_no_read(i, true);
    // Echoes pile up: 4 KiB in the client's window, 16 KiB in the server's send buffer, then
    // the server reads no more frames (TCP pushes back on the client).
    let msg = vec![b'z'; 1000];
    for _ in 0..40 {
        sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
    }
    sim.advance(Duration::from_secs(1));
    let stalled_at = sim.now;
    assert_eq!(sim.free_slots(), smolhttpd::SLOTS - 1);
    sim.advance(Duration::from_millis(8_800));
    assert_eq!(
        sim.free_slots(),
        smolhttpd::SLOTS - 1,
        "cut before the deadline"
    );
    sim.advance(Duration::from_millis(1_400));
    assert_eq!(
        sim.free_slots(),
        smolhttpd::SLOTS,
        "not cut at the deadline"
    );
    assert!(sim.now - stalled_at <= Duration::from_millis(10_300));
    assert_eq!(sim.server.stats().timeouts, 1);
    assert_eq!(*closes.borrow(), [1006]);
    assert!(sim.orphans().is_empty());
}

#[test]
fn websockets_count_with_streams_toward_the_cap() {
    let mut sim: Sim = Sim::new();
    let mut open = Vec::new();
    for n in 0..6 {
        open.push(if n % 2 == 0 {
            sim.open(&upgrade("/chat/ws", ""), Opts::default())
        } else {
            sim.open(
                b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
                Opts::default(),
            )
        });
        sim.advance(Duration::from_millis(20));
    }
    let ws7 = sim.open(&upgrade("/chat/ws", ""), Opts::default());
    sim.advance(Duration::from_millis(100));
    let r = Response::parse(&sim.conns[ws7].received).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(sim.conns[ws7].ended);
    // One leaves: the next gets in.
    sim.send(open[0], &close(1000));
    sim.advance(Duration::from_millis(100));
    let ws8 = sim.open(&upgrade("/chat/ws", ""), Opts::default());
    sim.advance(Duration::from_millis(100));
    assert!(split(&sim.conns[ws8].received)
        .0
        .starts_with("HTTP/1.1 101 "));
}

#[test]
fn under_pressure_a_websocket_gives_way_first_with_1001() {
    let (mut sim, closes) = ws_sim(Config::new());
    let socket = open_echo(&mut sim);
    // Nine more connections busy with slow request heads (worse candidates than a stream).
    for _ in 0..9 {
        sim.open(
            b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            Opts {
                gap: Some(Duration::from_millis(200)),
                ..Opts::default()
            },
        );
    }
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.free_slots(), 0);
    let newcomer = sim.open(&common::get_close("/index.html"), Opts::default());
    sim.advance(Duration::from_millis(300));
    assert_eq!(closed_with(&sim, socket), 1001);
    assert!(sim.conns[socket].ended);
    assert_eq!(sim.server.stats().evicted_stream, 1);
    assert_eq!(sim.server.stats().evicted_head, 0);
    assert_eq!(
        Response::parse(&sim.conns[newcomer].received)
            .unwrap()
            .status,
        200
    );
    assert_eq!(*closes.borrow(), [1001]);
}

#[test]
fn a_stopping_server_says_going_away() {
    let (mut sim, closes) = ws_sim(Config::new());
    let i = open_echo(&mut sim);
    sim.server.shutdown(sim.now, Duration::from_secs(3));
    sim.advance(Duration::from_millis(100));
    assert_eq!(closed_with(&sim, i), 1001);
    assert!(sim.server.is_stopped());
    assert_eq!(*closes.borrow(), [1001]);
}

/// The chat's messages of a `/chat/ws` socket (text frames parsed as JSON).
fn chat_frames(sim: &Sim, i: usize) -> Vec<serde_json::Value> {
    got(sim, i)
        .into_iter()
        .filter(|f| f.1 == ws::TEXT)
        .map(|f| serde_json::from_slice(&f.2).unwrap())
        .collect()
}

#[test]
fn the_chat_over_websocket_reaches_six_sockets_with_one_not_reading() {
    let mut sim: Sim = Sim::new();
    let sockets: Vec<usize> = (0..6)
        .map(|n| {
            sim.open(
                &upgrade("/chat/ws", ""),
                Opts {
                    rx_buffer: Some(if n == 5 { 1024 } else { 65536 }),
                    ..Opts::default()
                },
            )
        })
        .collect();
    sim.advance(Duration::from_millis(100));
    let deaf = sockets[5];
    sim.set_no_read(deaf, true);
    // One post over the socket: every socket has it in the poll that took it.
    sim.send(sockets[0], &text(r#"{"name":"ana","text":"hola"}"#));
    sim.advance(Duration::from_millis(50));
    for &s in &sockets[..5] {
        assert_eq!(
            chat_frames(&sim, s),
            [serde_json::json!({"id":1,"name":"ana","text":"hola"})]
        );
    }
    let t = sim.conns[sockets[0]].last_rx;
    assert!(sockets[1..5].iter().all(|&s| sim.conns[s].last_rx == t));
    // 60 posts of 200 bytes from the sockets in turn: the deaf one's window shuts, the others
    // get every message, in order, byte for byte.
    let body = "x".repeat(200);
    for n in 2..=61 {
        let from = sockets[n % 5];
        sim.send(
            from,
            &text(&format!(r#"{{"name":"n{n}","text":"{n} {body}"}}"#)),
        );
        sim.advance(Duration::from_millis(20));
    }
    sim.advance(Duration::from_millis(200));
    for &s in &sockets[..5] {
        let got = chat_frames(&sim, s);
        assert_eq!(got.len(), 61, "socket {s}");
        for (k, m) in got.iter().enumerate().skip(1) {
            let n = k + 1;
            assert_eq!(m["id"], n as u64);
            assert_eq!(m["name"], format!("n{n}"));
            assert_eq!(m["text"], format!("{n} {body}"));
        }
    }
    // The deaf socket holds its slot until the send deadline, blocking nobody.
    assert!(!sim.conns[deaf].ended);
    sim.advance(Duration::from_secs(11));
    assert!(sim.free_slots() == smolhttpd::SLOTS - 5);
    // And a new socket resumes from ?since=N.
    let late = sim.open(&upgrade("/chat/ws?since=58", ""), Opts::default());
    sim.advance(Duration::from_millis(100));
    let ids: Vec<u64> = chat_frames(&sim, late)
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [59, 60, 61]);
}

#[test]
fn chat_errors_are_json_messages_and_the_socket_stays() {
    let mut sim: Sim = Sim::new();
    let s = sim.open(&upgrade("/chat/ws", ""), Opts::default());
    let listener = sim.open(
        b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts::default(),
    );
    sim.advance(Duration::from_millis(50));
    let long_text = format!(r#"{{"text":"{}"}}"#, "a".repeat(257));
    let long_name = format!(r#"{{"name":"{}","text":"x"}}"#, "é".repeat(17));
    for bad in [
        r#"{"name":"ana"}"#,
        r#"{"text":"   "}"#,
        r#"{"text":"a\q"}"#,
        "not json",
        r#"{"text":"x"} trailing"#,
        r#"{"text":{"nested":1}}"#,
        r#"{"text":"\ud800"}"#,
    ] {
        sim.send(s, &text(bad));
    }
    sim.send(s, &text(&long_text));
    sim.send(s, &text(&long_name));
    sim.send(s, &frame(true, ws::BINARY, b"{\"text\":\"x\"}", MASK));
    // Escapes, any member order, other members ignored; the same limits as the form.
    sim.send(
        s,
        &text(r#" { "x": 1.5e3, "text" : "l\u00ednea\n\"2\" \ud83d\ude00", "name": "b\/c", "ok": true } "#),
    );
    sim.send(s, &text(&format!(r#"{{"text":"{}"}}"#, "a".repeat(256))));
    sim.advance(Duration::from_millis(100));
    let got = chat_frames(&sim, s);
    let statuses: Vec<u64> = got.iter().filter_map(|m| m["status"].as_u64()).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 400, 400, 400, 413, 413, 415]);
    assert!(got[..10].iter().all(|m| m["error"].is_string()));
    assert_eq!(
        got[10],
        serde_json::json!({"id":1,"name":"b/c","text":"línea\n\"2\" 😀"})
    );
    assert_eq!(got[11]["id"], 2);
    assert_eq!(got[11]["name"], "anon");
    // The event stream has both posts, the form's posts reach the socket.
    let events = String::from_utf8_lossy(&sim.conns[listener].received).to_string();
    assert!(
        events.contains("id: 1\n") && events.contains("id: 2\n"),
        "{events}"
    );
    let p = sim.open(
        &common::chat_post("name=f&text=from+the+form"),
        Opts::like_curl(),
    );
    sim.advance(Duration::from_millis(100));
    assert_eq!(Response::parse(&sim.conns[p].received).unwrap().status, 201);
    assert_eq!(chat_frames(&sim, s)[12]["text"], "from the form");
    assert!(!sim.conns[s].ended);
}

/// More frames than the slot's buffer holds, in one burst: every one is echoed at once, none
/// waits in the socket for a later wake-up.
#[test]
fn a_burst_larger_than_the_buffer_is_echoed_at_once() {
    let (mut sim, _) = ws_sim(Config::new());
    let i = open_echo(&mut sim);
    let msg = [7u8; 64];
    for _ in 0..100 {
        sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
    }
    sim.advance(Duration::from_millis(100));
    let echoed = got(&sim, i).iter().filter(|f| f.2 == msg).count();
    assert_eq!(echoed, 100);
}

/// A client that keeps 32 small messages in flight, sending one for each echo back (like a
/// benchmark's client): 3,000 round trips, no stall.
#[test]
fn thirty_two_in_flight_never_stall() {
    let (mut sim, _) = ws_sim(Config::new());
    let i = open_echo(&mut sim);
    let msg = [9u8; 64];
    let mut sent = 0;
    let mut echoed = 0;
    while sent < 32 {
        sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
        sent += 1;
    }
    let start = sim.now;
    while echoed < 3000 {
        // One frame a segment, as a client with TCP_NODELAY sends them: the server's receive
        // ring wraps in the middle of frames.
        sim.step_once();
        sim.advance(Duration::from_micros(100));
        let now_echoed = got(&sim, i).iter().filter(|f| f.2 == msg).count();
        for _ in echoed..now_echoed {
            if sent < 3000 {
                sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
                sim.step_once();
                sent += 1;
            }
        }
        echoed = now_echoed;
        assert!(
            sim.now - start < Duration::from_secs(20),
            "stalled at {echoed} echoes"
        );
    }
}

/// A reader that pauses while the client keeps sending: the server's send buffer fills, it
/// stops taking frames, its receive ring fills and wraps in the middle of frames; once the
/// client reads again, every frame is echoed without waiting for another segment.
#[test]
fn frames_across_the_receive_ring_end_are_not_left_waiting() {
    for size in [57usize, 64, 70, 97, 130, 250] {
        let (mut sim, _) = ws_sim(Config::new());
        let i = sim.open(
            &upgrade("/ws/echo", ""),
            Opts {
                rx_buffer: Some(4096),
                ..Opts::default()
            },
        );
        sim.advance(Duration::from_millis(50));
        sim.set_no_read(i, true);
        let msg = vec![5u8; size];
        let n = 24_000 / size;
        for _ in 0..n {
            sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
        }
        sim.advance(Duration::from_millis(500));
        sim.set_no_read(i, false);
        sim.advance(Duration::from_millis(300));
        let echoed = got(&sim, i).iter().filter(|f| f.2 == msg).count();
        assert_eq!(echoed, n, "{size}-byte messages");
    }
}

#[test]
fn a_socket_that_reads_nothing_but_sends_pongs_still_meets_the_send_deadline() {
    // The deaf peer keeps its side talking (a pong every 2 s, which needs no room to answer)
    // while its window stays shut: bytes read are not progress, so the 10 s deadline holds.
    let mut sim: Sim = Sim::new();
    let deaf = sim.open(
        &upgrade("/chat/ws", ""),
        Opts {
            rx_buffer: Some(1024),
            ..Opts::default()
        },
    );
    let poster = sim.open(&upgrade("/chat/ws", ""), Opts::default());
    sim.advance(Duration::from_millis(100));
    sim.set_no_read(deaf, true);
    let body = "x".repeat(200);
    for n in 0..40 {
        sim.send(
            poster,
            &text(&format!(r#"{{"name":"p","text":"{n} {body}"}}"#)),
        );
        sim.advance(Duration::from_millis(20));
    }
    let stalled_at = sim.now;
    let mut cut_at = None;
    for _ in 0..10 {
        sim.send(deaf, &frame(true, ws::PONG, b"", MASK));
        sim.advance(Duration::from_secs(2));
        if cut_at.is_none() && sim.conns[deaf].ended {
            cut_at = Some(sim.now);
        }
    }
    let cut_at = cut_at.expect("the deaf socket was never cut");
    let took = (cut_at - stalled_at).total_millis();
    assert!(took <= 12_100, "cut {took} ms after its window shut");
    assert!(!sim.conns[poster].ended);
    assert_eq!(sim.server.stats().timeouts, 1);
}

#[test]
fn a_burst_of_many_control_frames_is_read_through_at_once() {
    // 200 empty pongs (more than a step's 64 frames, none needing an answer) and a message
    // behind them, in one segment: the message is echoed at once, not at the next heartbeat.
    let (mut sim, _) = ws_sim(Config::new());
    let i = open_echo(&mut sim);
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend(frame(true, ws::PONG, b"", MASK));
    }
    burst.extend(text("after the pongs"));
    assert!(burst.len() < 1400, "one segment");
    sim.send(i, &burst);
    sim.advance(Duration::from_millis(100));
    let f = got(&sim, i);
    assert_eq!(
        f.last().map(|f| (f.1, f.2.clone())),
        Some((ws::TEXT, b"after the pongs".to_vec())),
        "{f:?}"
    );
}

#[test]
fn frames_whole_before_the_peers_fin_are_still_answered() {
    // The peer sends messages faster than it reads, then a close frame and its FIN: the
    // messages waiting for room are echoed and the close answered once it reads again, rather
    // than everything dropped as "ended without a close frame" (1006).
    let (mut sim, closes) = ws_sim(Config::new());
    let i = sim.open(
        &upgrade("/ws/echo", ""),
        Opts {
            rx_buffer: Some(4096),
            ..Opts::default()
        },
    );
    sim.advance(Duration::from_millis(50));
    sim.set_no_read(i, true);
    let msg = vec![b'z'; 1000];
    for _ in 0..24 {
        sim.send(i, &frame(true, ws::BINARY, &msg, MASK));
    }
    sim.send(i, &close(1000));
    sim.advance(Duration::from_millis(500));
    sim.close_client(i);
    sim.advance(Duration::from_millis(500));
    sim.set_no_read(i, false);
    sim.advance(Duration::from_secs(8));
    let f = got(&sim, i);
    let echoed = f.iter().filter(|f| f.1 == ws::BINARY).count();
    assert_eq!(
        echoed,
        24,
        "{} frames, last {:?}, states {:?}, closes {:?}",
        f.len(),
        f.last().map(|f| (f.1, f.2.len())),
        sim.server.slot_states(),
        closes.borrow()
    );
    assert_eq!(closed_with(&sim, i), 1000);
    assert_eq!(*closes.borrow(), [1000]);
}
