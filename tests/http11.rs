//! What browsers and players expect (ranges, validators, gzip, persistent connections) and
//! fair slots (hold-off instead of RST, deadlines, no TIME-WAIT pinning), in simulated time.

mod common;

use common::{get_close, Opts, Response, Sim};
use smoltcp::time::Duration;

const VIDEO: &str = "/video/Planeta.mp4";

fn video() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fs_image/video/Planeta.mp4"
    ))
    .unwrap()
}

fn get_with(sim: &mut Sim, path: &str, headers: &str) -> Response {
    let raw = sim.exchange(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    );
    Response::parse(&raw).unwrap_or_else(|| panic!("no response: {raw:?}"))
}

#[test]
fn range_rows() {
    let mut sim: Sim = Sim::new();
    let v = video();
    let len = v.len();
    let r = get_with(&mut sim, VIDEO, "Range: bytes=0-99\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 0-99/{len}"))
    );
    assert_eq!(r.body, &v[..100]);
    let r = get_with(&mut sim, VIDEO, "Range: bytes=1000000-\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 1000000-{}/{len}", len - 1))
    );
    assert_eq!(r.body, &v[1_000_000..]);
    let r = get_with(&mut sim, VIDEO, "Range: bytes=-500\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &v[len - 500..]);
    let r = get_with(&mut sim, VIDEO, &format!("Range: bytes={len}-\r\n"));
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes */{len}")));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // RFC 9110 14.1: the unit is case-insensitive.
    let r = get_with(&mut sim, VIDEO, "Range: Bytes=0-9\r\n");
    assert_eq!((r.status, r.body.len()), (206, 10));
    // RFC 9110 14.1.3: a first position past the end, however long, is 416; a suffix longer
    // than the file is the whole file, as a 206.
    let r = get_with(&mut sim, VIDEO, "Range: bytes=99999999999999999999999-\r\n");
    assert_eq!(r.status, 416);
    let r = get_with(&mut sim, VIDEO, "Range: bytes=-99999999999999999999999\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 0-{}/{len}", len - 1))
    );
    assert_eq!(r.body, v);
    // Other units, bad syntax and several ranges: the whole file.
    for h in [
        "Range: items=0-1\r\n",
        "Range: bytes=x-\r\n",
        "Range: bytes=0-1,5-6\r\n",
    ] {
        let r = get_with(&mut sim, VIDEO, h);
        assert_eq!(r.status, 200, "{h}");
        assert_eq!(r.body.len(), len);
    }
    // If-Range with the current ETag honours the range; with another, the whole file.
    let etag = get_with(&mut sim, "/img/car.jpeg", "")
        .header("etag")
        .unwrap()
        .to_string();
    let r = get_with(
        &mut sim,
        "/img/car.jpeg",
        &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(r.status, 206);
    let r = get_with(
        &mut sim,
        "/img/car.jpeg",
        "Range: bytes=0-9\r\nIf-Range: \"old\"\r\n",
    );
    assert_eq!(r.status, 200);
}

/// RFC 9112 3.2.2: an absolute-form target's query reaches the handler (with no path, the
/// path is "/": see http.rs's unit test); RFC 9110 13.1.3: an If-Modified-Since that is not a
/// valid date (31 February) is ignored.
#[test]
fn absolute_form_query_and_impossible_dates() {
    let mut sim: Sim = Sim::new();
    sim.exchange(&common::chat_post("name=a&text=one"));
    sim.exchange(&common::chat_post("name=a&text=two"));
    let raw =
        sim.exchange(b"GET http://t/chat?since=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let body = String::from_utf8(Response::parse(&raw).unwrap().body).unwrap();
    assert!(
        body.contains("\"text\":\"two\"") && !body.contains("\"text\":\"one\""),
        "{body}"
    );
    let r = get_with(
        &mut sim,
        "/img/car.jpeg",
        "If-Modified-Since: Sat, 31 Feb 2099 00:00:00 GMT\r\n",
    );
    assert_eq!(
        r.status, 200,
        "an impossible date is ignored, not read as 3 March"
    );
}

#[test]
fn conditional_get_is_304_without_body() {
    let mut sim: Sim = Sim::new();
    let r = get_with(&mut sim, "/img/perro.jpg", "");
    let etag = r.header("etag").unwrap().to_string();
    for inm in [
        etag.clone(),
        format!("\"x\", {etag}"),
        "*".to_string(),
        format!("W/{etag}"),
    ] {
        let raw = sim.exchange(
            format!("GET /img/perro.jpg HTTP/1.1\r\nHost: t\r\nIf-None-Match: {inm}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.status, 304, "{inm}");
        assert_eq!(r.len, raw.len(), "304 has no body");
        assert_eq!(r.header("etag"), Some(&*etag));
    }
    assert_eq!(
        get_with(&mut sim, "/img/perro.jpg", "If-None-Match: \"other\"\r\n").status,
        200
    );
}

#[test]
fn gzip_only_for_clients_that_accept_it() {
    let mut sim: Sim = Sim::new();
    let plain = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fs_image/index.html")).unwrap();
    let r = get_with(&mut sim, "/", "Accept-Encoding: gzip, deflate\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&r.body[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, plain);
    assert!(r.body.len() < plain.len());
    // The gzip copy is another representation with its own ETag; validators follow it.
    let plain_etag = get_with(&mut sim, "/", "")
        .header("etag")
        .unwrap()
        .to_string();
    let gz_etag = r.header("etag").unwrap().to_string();
    assert_ne!(plain_etag, gz_etag);
    let gz = "Accept-Encoding: gzip\r\n";
    let inm = |etag: &str| format!("{gz}If-None-Match: {etag}\r\n");
    assert_eq!(get_with(&mut sim, "/", &inm(&gz_etag)).status, 304);
    assert_eq!(get_with(&mut sim, "/", &inm(&plain_etag)).status, 200);
    let stale = format!("{gz}Range: bytes=0-9\r\nIf-Range: {plain_etag}\r\n");
    assert_eq!(get_with(&mut sim, "/", &stale).status, 200);
    // Ranges apply to the gzip representation.
    let part = get_with(
        &mut sim,
        "/",
        "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &r.body[..10]);
    for h in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: br\r\n",
    ] {
        let r = get_with(&mut sim, "/", h);
        assert_eq!(r.header("content-encoding"), None, "{h}");
        assert_eq!(r.body, plain, "{h}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    }
    // Media is never gzipped.
    let r = get_with(&mut sim, "/img/car.jpeg", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let mut sim: Sim = Sim::new();
    let paths = [
        "/text/text.htm",
        "/img/car.jpeg",
        "/nope",
        "/text/index.html",
        "/404.html",
    ];
    let mut req = String::new();
    for p in paths {
        req.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    let i = sim.open(
        req.as_bytes(),
        Opts {
            close_after: Some(paths.len()),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(10)));
    let all = Response::parse_all(&sim.conns[i].received);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 404, 200, 200]);
    let files = common::image_files();
    for (r, p) in all.iter().zip(paths) {
        if let Some((_, bytes)) = files.iter().find(|(f, _)| f == p) {
            assert_eq!(&r.body, bytes, "{p}");
        }
    }
    assert_eq!(sim.server.stats().connections, 1);
}

#[test]
fn http10_keep_alive_on_request() {
    let mut sim: Sim = Sim::new();
    let i = sim.open(
        b"GET /text/text.htm HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /404.html HTTP/1.0\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(10)));
    let all = Response::parse_all(&sim.conns[i].received);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].header("connection"), Some("keep-alive"));
    assert_eq!(all[1].header("connection"), Some("close"));
}

#[test]
fn directory_without_slash_redirects() {
    let mut sim: Sim = Sim::new();
    let r = get_with(&mut sim, "/video", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/video/"));
}

#[test]
fn thirty_clients_against_ten_slots_are_all_served_without_rst() {
    let mut sim: Sim = Sim::new();
    for k in 0..30 {
        let path = if k % 3 == 0 {
            "/video/Flores.mp4"
        } else {
            "/img/car.jpeg"
        };
        sim.open(&get_close(path), Opts::default());
    }
    assert!(sim.run(Duration::from_secs(120)), "not all served");
    for (k, c) in sim.conns.iter().enumerate() {
        assert!(!c.reset, "client {k} was refused");
        let r = Response::parse(&c.received).unwrap_or_else(|| panic!("client {k}: no response"));
        assert_eq!(r.status, 200, "client {k}");
    }
    let stats = sim.server.stats();
    assert!(stats.held_off > 0, "no SYN was held off: {stats:?}");
    assert_eq!(stats.connections, 30);
    sim.advance(Duration::from_secs(15));
    assert_eq!(sim.free_slots(), 10);
}

#[test]
fn idle_keep_alive_connections_make_room_for_waiting_clients() {
    let mut sim: Sim = Sim::new();
    // Ten clients take every slot with one keep-alive request each and then sit idle.
    for _ in 0..10 {
        sim.open(
            b"GET /text/text.htm HTTP/1.1\r\nHost: t\r\n\r\n",
            Opts::default(),
        );
    }
    sim.advance(Duration::from_millis(500));
    assert_eq!(sim.free_slots(), 0);
    let start = sim.now;
    let late = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(30)));
    let c = &sim.conns[late];
    assert!(!c.reset);
    assert_eq!(Response::parse(&c.received).unwrap().status, 200);
    // Served on the SYN retry, well before the 5 s idle deadline would free a slot.
    let waited = c.ended_at.unwrap() - start;
    assert!(waited < Duration::from_secs(4), "waited {waited}");
}

#[test]
fn sequential_close_requests_do_not_pin_slots_in_time_wait() {
    let mut sim: Sim = Sim::new();
    let start = sim.now;
    for k in 0..200 {
        let r = sim.get("/text/text.htm");
        assert_eq!(r.status, 200, "request {k}");
    }
    let took = sim.now - start;
    assert!(
        took < Duration::from_secs(10),
        "200 requests took {took} of simulated time"
    );
    assert_eq!(sim.server.stats().held_off, 0);
}

#[test]
fn head_deadline_fires_at_five_seconds_from_the_first_byte() {
    let mut sim: Sim = Sim::new();
    // One header byte a second: the head can never complete in time.
    let slow = sim.open(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        Opts {
            gap: Some(Duration::from_secs(1)),
            ..Opts::default()
        },
    );
    let start = sim.now;
    // Meanwhile another client is served at once.
    sim.advance(Duration::from_millis(1500));
    let fast = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(30)));
    assert_eq!(
        Response::parse(&sim.conns[fast].received).unwrap().status,
        200
    );
    assert!(sim.conns[fast].ended_at.unwrap() - start < Duration::from_secs(2));
    let c = &sim.conns[slow];
    assert_eq!(Response::parse(&c.received).unwrap().status, 408);
    let at = c.last_rx.unwrap() - start;
    assert!(
        at >= Duration::from_secs(5) && at <= Duration::from_millis(5100),
        "408 at {at}"
    );
    assert_eq!(sim.server.stats().timeouts, 1);
}

#[test]
fn idle_keep_alive_closes_after_five_seconds() {
    let mut sim: Sim = Sim::new();
    let i = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts::default(),
    );
    let start = sim.now;
    assert!(sim.run(Duration::from_secs(30)));
    let c = &sim.conns[i];
    assert_eq!(Response::parse(&c.received).unwrap().status, 200);
    let at = c.ended_at.unwrap() - start;
    assert!(
        at >= Duration::from_secs(5) && at <= Duration::from_millis(5100),
        "closed at {at}"
    );
}

#[test]
fn a_silent_new_connection_is_closed_after_the_idle_deadline() {
    let mut sim: Sim = Sim::new();
    let i = sim.open(b"", Opts::default());
    let start = sim.now;
    assert!(sim.run(Duration::from_secs(30)));
    let at = sim.conns[i].ended_at.unwrap() - start;
    assert!(
        at >= Duration::from_secs(5) && at <= Duration::from_millis(5100),
        "closed at {at}"
    );
    assert!(sim.conns[i].received.is_empty());
}

#[test]
fn a_client_that_stops_reading_is_aborted_after_ten_seconds() {
    let mut sim: Sim = Sim::new();
    let start = sim.now;
    sim.open(
        format!("GET {VIDEO} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        Opts {
            no_read: true,
            ..Opts::default()
        },
    );
    // Within milliseconds the client's window and the server's send buffer are full; from
    // then on nothing moves, and 10 s later the slot is free again.
    sim.advance(Duration::from_millis(9_900));
    assert_eq!(sim.free_slots(), 9, "aborted too early");
    sim.advance(Duration::from_millis(600));
    assert_eq!(
        sim.free_slots(),
        10,
        "not aborted {} after the request",
        sim.now - start
    );
    assert_eq!(sim.server.stats().timeouts, 1);
}

#[test]
fn date_header_when_the_host_gives_a_wall_clock() {
    let mut sim: Sim = Sim::new();
    assert_eq!(sim.get("/404.html").header("date"), None);
    let now = sim.now;
    sim.server.set_wall_clock(784_111_777, now);
    let r = sim.get("/404.html");
    let date = r.header("date").unwrap();
    assert!(date.starts_with("Sun, 06 Nov 1994 08:49:"), "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
}

#[test]
fn status_reports_slots_and_counters() {
    let mut sim: Sim = Sim::new();
    for _ in 0..3 {
        sim.get("/img/car.jpeg");
    }
    sim.get("/nope");
    // One client keeps a slot busy sending while /status is asked.
    sim.open(
        format!("GET {VIDEO} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        Opts {
            no_read: true,
            ..Opts::default()
        },
    );
    sim.advance(Duration::from_millis(100));
    let before = sim.conns.len();
    let i = sim.open(
        b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Opts::default(),
    );
    sim.advance(Duration::from_millis(200));
    assert_eq!(sim.conns.len(), before + 1);
    let r = Response::parse(&sim.conns[i].received).expect("status response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 10);
    let states: Vec<&str> = slots.iter().map(|s| s["state"].as_str().unwrap()).collect();
    // The stuck download is sending; the slot answering shows as it was just before (its
    // request had arrived, not yet parsed); the other eight listen.
    let count = |name: &str| states.iter().filter(|s| **s == name).count();
    assert_eq!(count("send"), 1, "{states:?}");
    assert_eq!(count("listen"), 8, "{states:?}");
    // Counted before this one: three images, the 404 and the stuck download.
    assert_eq!(v["requests"], 5);
    assert_eq!(v["client_errors"], 1);
    assert!(v["bytes"].as_u64().unwrap() >= 3 * 14_595);
    let served: u64 = slots.iter().map(|s| s["served"].as_u64().unwrap()).sum();
    assert_eq!(served, 4);
}

#[test]
fn ten_keep_alive_clients_stay_on_their_connections_after_a_crowd() {
    let mut sim: Sim = Sim::new();
    // Ten clients, each 50 requests one after another on one connection (like wrk -c10).
    for _ in 0..10 {
        sim.open(
            b"GET /text/text.htm HTTP/1.1\r\nHost: t\r\n\r\n",
            Opts {
                again: 49,
                close_after: Some(50),
                ..Opts::default()
            },
        );
    }
    sim.advance(Duration::from_millis(50));
    // An eleventh client arrives while all ten slots are busy: it is held off, then served.
    let late = sim.open(
        b"GET /404.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Opts::default(),
    );
    assert!(sim.run(Duration::from_secs(60)));
    assert_eq!(
        Response::parse(&sim.conns[late].received).unwrap().status,
        200
    );
    let mut closes = 0;
    for (k, c) in sim.conns[..10].iter().enumerate() {
        let all = Response::parse_all(&c.received);
        assert!(
            !all.is_empty() && all.iter().all(|r| r.status == 200),
            "client {k}"
        );
        closes += all
            .iter()
            .filter(|r| r.header("connection") == Some("close"))
            .count();
    }
    // One connection may be asked to make room for the late client; nobody else is.
    assert!(
        closes <= 1,
        "{closes} keep-alive responses said Connection: close"
    );
    assert!(sim.server.stats().held_off >= 1);
}
