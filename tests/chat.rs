//! The group chat from the outside: POST and GET /chat over the in-process network, replies
//! checked with httparse and serde_json.

mod common;

use common::{Opts, Response, Sim};
use smoltcp::time::Duration;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn post_request(name: &str, text: &str) -> Vec<u8> {
    common::chat_post(&format!("name={}&text={}", encode(name), encode(text)))
}

fn post(sim: &mut Sim, name: &str, text: &str) -> Response {
    let raw = sim.exchange(&post_request(name, text));
    Response::parse(&raw).expect("response to POST")
}

fn get_json(sim: &mut Sim, since: u32) -> serde_json::Value {
    let r = sim.get(&format!("/chat?since={since}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn two_clients_exchange_messages_in_order() {
    let mut sim: Sim = Sim::new();
    let r = post(&mut sim, "ana", "hola, ¿qué tal?");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), Some("/chat?since=1"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], 1);
    // Beto reads what is there, answers; Ana polls from where she was.
    let seen = get_json(&mut sim, 0);
    assert_eq!(seen["messages"][0]["name"], "ana");
    assert_eq!(seen["messages"][0]["text"], "hola, ¿qué tal?");
    assert_eq!(seen["next"], 1);
    assert_eq!(
        post(&mut sim, "beto", "bien <b>gracias</b> & \"tú\"?").status,
        201
    );
    let ana = get_json(&mut sim, 1);
    assert_eq!(ids(&ana), [2]);
    assert_eq!(ana["messages"][0]["text"], "bien <b>gracias</b> & \"tú\"?");
    assert_eq!(ana["next"], 2);
    assert_eq!(ids(&get_json(&mut sim, 2)), Vec::<u64>::new());
    assert_eq!(ids(&get_json(&mut sim, 0)), [1, 2]);
}

#[test]
fn the_ring_keeps_the_newest_64_with_the_gap_visible() {
    let mut sim: Sim = Sim::new();
    for i in 1..=69 {
        let r = post(&mut sim, "n", &format!("message {i}"));
        assert_eq!(r.status, 201, "post {i}");
    }
    let all = get_json(&mut sim, 0);
    assert_eq!(ids(&all), (6..=69).collect::<Vec<_>>());
    assert_eq!(all["messages"][0]["text"], "message 6");
    assert_eq!(all["next"], 69);
    assert_eq!(ids(&get_json(&mut sim, 60)), (61..=69).collect::<Vec<_>>());
}

#[test]
fn error_rows() {
    let mut sim: Sim = Sim::new();
    let form = |body: &str, ct: &str| {
        format!(
            "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let ct = "application/x-www-form-urlencoded";
    let cases: Vec<(String, u16)> = vec![
        (form("name=ana&text=", ct), 400),
        (form("name=ana", ct), 400),
        (form("name=ana&text=%zz", ct), 400),
        (form("name=ana&text=%C3%28", ct), 400),
        (form(&format!("name={}&text=x", "a".repeat(33)), ct), 413),
        (form(&format!("name=a&text={}", "a".repeat(257)), ct), 413),
        (form(&format!("name=a&text={}", "%C3%B1".repeat(129)), ct), 413),
        (form("name=ana&text=hi", "text/plain"), 415),
        (form("{\"text\":\"hi\"}", "application/json"), 415),
        ("POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n".into(), 411),
        ("POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 411),
        (format!("POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: 100000\r\n\r\n"), 413),
        ("GET /chat?since=abc HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("GET /chat?since=-1 HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
    ];
    for (req, status) in &cases {
        let raw = sim.exchange(req.as_bytes());
        let r = Response::parse(&raw).unwrap_or_else(|| panic!("{req:?}: no response"));
        assert_eq!(r.status, *status, "{req:?}");
    }
    for method in ["PUT", "DELETE", "PATCH"] {
        let raw = sim.exchange(
            format!("{method} /chat HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, POST"), "{method}");
    }
    // None of the bad posts got in.
    assert_eq!(ids(&get_json(&mut sim, 0)), Vec::<u64>::new());
    assert_eq!(sim.free_slots(), 10);
}

#[test]
fn ten_clients_posting_at_once_lose_nothing() {
    let mut sim: Sim = Sim::new();
    for round in 0..3 {
        for i in 0..10 {
            sim.open(
                &post_request(&format!("c{i}"), &format!("round {round} from {i}")),
                Opts::default(),
            );
        }
        assert!(sim.run(Duration::from_secs(30)));
        for c in &sim.conns {
            assert_eq!(Response::parse(&c.received).unwrap().status, 201);
        }
        sim.conns.clear();
    }
    let all = get_json(&mut sim, 0);
    assert_eq!(ids(&all), (1..=30).collect::<Vec<_>>());
    let mut texts: Vec<String> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|r| (0..10).map(move |i| format!("round {r} from {i}")))
        .collect();
    want.sort();
    assert_eq!(texts, want);
}

#[test]
fn a_reply_bigger_than_the_send_buffer_arrives_whole() {
    let mut sim: Sim = Sim::new();
    // Texts that escape about five-fold (to 936 bytes of JSON each, under chat::MAX_JSON): 64
    // of them make about 60 KB of JSON.
    let text = "<\u{1}\"\\>&".repeat(32);
    assert!(text.len() <= 256);
    for i in 0..64 {
        assert_eq!(post(&mut sim, &format!("n{i}"), &text).status, 201);
    }
    let r = sim.get("/chat?since=0");
    assert!(
        r.body.len() > 3 * smolhttpd::config::TX_BUFFER,
        "{}",
        r.body.len()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(ids(&v), (1..=64).collect::<Vec<_>>());
    assert!(v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["text"] == text.as_str()));
    // Nothing that could close a <script> or start a tag is in the bytes.
    assert!(!r.body.contains(&b'<') && !r.body.contains(&b'>'));
}

#[test]
fn a_body_in_pieces_is_read_and_a_stalled_one_times_out() {
    let mut sim: Sim = Sim::new();
    // One byte every 100 ms: slow, but each read is within the 5 s body deadline.
    sim.conns.clear();
    let i = sim.open(
        &post_request("slow", "one byte at a time"),
        Opts {
            gap: Some(Duration::from_millis(100)),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(120)));
    // The head took more than 5 s to trickle in: 408.
    let r = Response::parse(&sim.conns[i].received).unwrap();
    assert_eq!(r.status, 408);
    // Head at once, then a body that stops half way: 408 after the body deadline.
    sim.conns.clear();
    let mut req = post_request("ana", "this body never ends");
    req.truncate(req.len() - 5);
    let i = sim.open(&req, Opts::default());
    let start = sim.now;
    assert!(sim.run(Duration::from_secs(30)));
    let r = Response::parse(&sim.conns[i].received).unwrap();
    assert_eq!(r.status, 408);
    let took = sim.conns[i].last_rx.unwrap() - start;
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took}"
    );
    // A head that arrives in pieces with the body right behind it is fine.
    let req = post_request("ana", "pieces");
    sim.conns.clear();
    let i = sim.open(
        &req,
        Opts {
            gap: Some(Duration::from_millis(20)),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(30)));
    assert_eq!(Response::parse(&sim.conns[i].received).unwrap().status, 201);
    assert_eq!(ids(&get_json(&mut sim, 0)), [1]);
    assert_eq!(sim.free_slots(), 10);
}
