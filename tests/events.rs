//! `GET /chat/events`: the chat as a Server-Sent Events stream. Events reach every listener in
//! the poll of the post, resume from `Last-Event-ID` or `?since=N`, say when messages were
//! dropped, stream a backlog larger than the send buffer, are capped at `max_streams` (503),
//! and give way first when a client waits for a slot, losing and repeating nothing.

mod common;

use common::{get_close, Opts, Response, Sim};
use smolhttpd::Config;
use smoltcp::time::Duration;

/// One parsed event: (event type, id, data).
type Event = (String, Option<u64>, String);

/// The events of a stream's raw bytes (after its head).
fn events(raw: &[u8]) -> Vec<Event> {
    let text = String::from_utf8_lossy(raw);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    body.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let (mut kind, mut id, mut data) = ("message".to_string(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                }
            }
            (kind, id, data)
        })
        .collect()
}

fn ids(raw: &[u8]) -> Vec<u64> {
    events(raw).iter().filter_map(|e| e.1).collect()
}

fn post_req(text: &str) -> Vec<u8> {
    common::chat_post(&format!("name=ana&text={text}"))
}

fn post<const N: usize>(sim: &mut Sim<N>, text: &str) -> usize {
    let i = sim.open(&post_req(text), Opts::like_curl());
    sim.advance(Duration::from_millis(50));
    assert_eq!(Response::parse(&sim.conns[i].received).unwrap().status, 201);
    i
}

fn listen(sim: &mut Sim, extra: &str) -> usize {
    let req = format!("GET /chat/events{extra}\r\n\r\n");
    sim.open(req.as_bytes(), Opts::default())
}

#[test]
fn an_event_reaches_five_streams_in_the_poll_of_the_post() {
    let mut sim: Sim = Sim::new();
    let streams: Vec<usize> = (0..5)
        .map(|_| listen(&mut sim, " HTTP/1.1\r\nHost: t"))
        .collect();
    sim.advance(Duration::from_millis(100));
    for &s in &streams {
        let r = Response::parse_with(&sim.conns[s].received, true).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("content-length"), None);
        assert!(String::from_utf8_lossy(&sim.conns[s].received).contains("\r\n\r\nretry: 2000\n\n"));
    }
    let p = sim.open(&post_req("hola"), Opts::like_curl());
    // Step until the server answers the post; in that very poll every stream has its event
    // queued (unacknowledged bytes in its socket), the post's own 201 too.
    let before = sim.server.stats().requests;
    for _ in 0..100 {
        sim.step_once();
        if sim.server.stats().requests > before {
            break;
        }
    }
    assert_eq!(sim.server.stats().requests, before + 1);
    let queued = sim
        .server_sockets
        .iter()
        .filter_map(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(t) => Some(t.send_queue()),
            _ => None,
        })
        .filter(|&q| q > 0)
        .count();
    assert_eq!(
        queued, 6,
        "streams with the event in the poll of the post, plus the 201"
    );
    sim.advance(Duration::from_millis(100));
    let posted_at = sim.conns[p].last_rx.unwrap();
    for &s in &streams {
        let got = events(&sim.conns[s].received);
        assert_eq!(
            got,
            [(
                "message".into(),
                Some(1),
                r#"{"id":1,"name":"ana","text":"hola"}"#.into()
            )]
        );
        // The same simulated instant as the 201: sent in the poll that took the post.
        assert_eq!(sim.conns[s].last_rx, Some(posted_at));
    }
}

#[test]
fn resume_from_last_event_id_or_since() {
    let mut sim: Sim = Sim::new();
    for t in ["a", "b", "c"] {
        post(&mut sim, t);
    }
    let by_id = listen(&mut sim, " HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 1");
    let by_since = listen(&mut sim, "?since=2 HTTP/1.1\r\nHost: t");
    let both = listen(&mut sim, "?since=0 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 2");
    let all = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    // A browser back from an earlier run of the server, whose ids went higher: this run's
    // messages, all of them (before: nothing until ids passed 500).
    let restarted = listen(&mut sim, " HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 500");
    let restarted_since = listen(&mut sim, "?since=4000000000 HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_millis(100));
    assert_eq!(ids(&sim.conns[restarted].received), [1, 2, 3]);
    assert_eq!(ids(&sim.conns[restarted_since].received), [1, 2, 3]);
    assert_eq!(ids(&sim.conns[by_id].received), [2, 3]);
    assert_eq!(ids(&sim.conns[by_since].received), [3]);
    assert_eq!(ids(&sim.conns[both].received), [3]);
    assert_eq!(ids(&sim.conns[all].received), [1, 2, 3]);
    let bad = sim.exchange(b"GET /chat/events?since=x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(Response::parse(&bad).unwrap().status, 400);
    let post_events =
        sim.exchange(b"POST /chat/events HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let r = Response::parse(&post_events).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn dropped_messages_are_announced() {
    let mut sim: Sim = Sim::new();
    for i in 0..70 {
        post(&mut sim, &format!("m{i}"));
    }
    let s = listen(&mut sim, "?since=2 HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_millis(200));
    let got = events(&sim.conns[s].received);
    assert_eq!(got[0], ("gap".into(), None, r#"{"from":3,"to":6}"#.into()));
    let ids: Vec<u64> = got[1..].iter().map(|e| e.1.unwrap()).collect();
    assert_eq!(ids, (7..=70).collect::<Vec<_>>());
}

#[test]
fn a_backlog_larger_than_the_send_buffer() {
    let mut sim: Sim = Sim::new();
    // 64 messages of 150 characters escaped six-fold (936 bytes of JSON each, under
    // chat::MAX_JSON): about 60 KB of events.
    let text = "%3C".repeat(150);
    for _ in 0..64 {
        post(&mut sim, &text);
    }
    let s = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_secs(1));
    let raw = &sim.conns[s].received;
    assert!(
        raw.len() > 55_000 && raw.len() > 3 * smolhttpd::config::TX_BUFFER,
        "{}",
        raw.len()
    );
    assert_eq!(ids(raw), (1..=64).collect::<Vec<_>>());
    for e in events(raw) {
        let v: serde_json::Value = serde_json::from_str(&e.2).unwrap();
        assert_eq!(v["text"].as_str().unwrap(), "<".repeat(150));
    }
}

#[test]
fn streams_are_capped_with_503() {
    let mut sim: Sim = Sim::with_faults(0, 0, 0, Config::new().max_streams(2));
    let a = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    let _b = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_millis(100));
    let c = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_millis(100));
    let r = Response::parse(&sim.conns[c].received).unwrap();
    assert_eq!((r.status, r.header("retry-after")), (503, Some("5")));
    // One listener leaves: the next stream is welcome.
    sim.close_client(a);
    sim.advance(Duration::from_millis(100));
    let d = listen(&mut sim, " HTTP/1.1\r\nHost: t");
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        Response::parse_with(&sim.conns[d].received, true)
            .unwrap()
            .status,
        200
    );
    // Plain requests are not capped.
    assert_eq!(sim.get("/index.html").status, 200);
}

#[test]
fn a_stream_gives_way_and_resumes_with_nothing_lost_or_repeated() {
    let mut sim: Sim<2> = Sim::new();
    let open = |sim: &mut Sim<2>, last: Option<u64>| {
        let resume = last.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let req = format!("GET /chat/events HTTP/1.1\r\nHost: t\r\n{resume}\r\n");
        sim.open(req.as_bytes(), Opts::default())
    };
    // Two listeners hold both slots; each is a list of its connections.
    let mut listeners = vec![vec![open(&mut sim, None)], vec![open(&mut sim, None)]];
    sim.advance(Duration::from_millis(100));
    // EventSource: a closed stream reconnects from the last id it saw.
    let reconnect = |sim: &mut Sim<2>, listeners: &mut Vec<Vec<usize>>| {
        for conns in listeners.iter_mut() {
            let last = *conns.last().unwrap();
            if sim.conns[last].ended {
                assert!(!sim.conns[last].reset, "a stream was reset, not closed");
                let seen = conns
                    .iter()
                    .flat_map(|&c| ids(&sim.conns[c].received))
                    .last();
                conns.push(open(sim, seen));
            }
        }
        sim.advance(Duration::from_millis(300));
    };
    for t in ["one", "two", "three", "four"] {
        // Each post and a visitor wait for a stream to give way.
        let p = sim.open(&post_req(t), Opts::like_curl());
        let v = sim.open(&get_close("/index.html"), Opts::like_curl());
        sim.advance(Duration::from_millis(300));
        assert_eq!(Response::parse(&sim.conns[p].received).unwrap().status, 201);
        assert_eq!(Response::parse(&sim.conns[v].received).unwrap().status, 200);
        reconnect(&mut sim, &mut listeners);
        reconnect(&mut sim, &mut listeners);
    }
    assert!(
        sim.server.stats().evicted_stream >= 4,
        "{:?}",
        sim.server.stats()
    );
    for conns in &listeners {
        let got: Vec<u64> = conns
            .iter()
            .flat_map(|&c| ids(&sim.conns[c].received))
            .collect();
        assert_eq!(
            got,
            [1, 2, 3, 4],
            "a listener lost or repeated a message ({conns:?})"
        );
    }
}

/// A listener that stops reading: once its window is shut and nothing moves for the send
/// deadline (10 s), the server aborts the stream and frees the slot, and the listener is told
/// with a RST (a connection forgotten without one would hang a client that only reads).
#[test]
fn a_stuck_listener_is_reset_after_the_send_deadline() {
    let mut sim: Sim<2> = Sim::new();
    let stuck = sim.open(
        b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts {
            no_read: true,
            rx_buffer: Some(1024),
            ..Opts::default()
        },
    );
    sim.advance(Duration::from_millis(100));
    let long = "x".repeat(200);
    for _ in 0..12 {
        post(&mut sim, &long);
    }
    let full = sim.now;
    sim.advance(Duration::from_secs(9));
    assert!(!sim.conns[stuck].ended, "cut before the send deadline");
    sim.advance(Duration::from_secs(3));
    assert!(
        sim.conns[stuck].ended,
        "still connected 12 s after its window shut"
    );
    assert!(sim.resets_from_server() >= 1, "ended without a RST");
    assert_eq!(sim.orphans(), Vec::<usize>::new());
    assert_eq!(
        sim.server.stats().timeouts,
        1,
        "{:?} since {full}",
        sim.server.stats()
    );
    assert_eq!(sim.free_slots(), 2);
}
