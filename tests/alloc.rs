//! No heap on the serving path: a counting global allocator sees zero allocations inside
//! `Server::poll` from the first to the last request of a run of many requests.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{image_files, Opts, Response, Sim};
use smoltcp::time::Duration;

struct Counting;

thread_local! {
    static IN_SERVER: Cell<bool> = const { Cell::new(false) };
    /// Allocations made on this thread while `IN_SERVER` (each test has its own thread).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // try_with: the thread's locals may be gone while it exits.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn take_count() -> usize {
    ALLOCATIONS.with(|c| c.replace(0))
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if IN_SERVER.try_with(Cell::get).unwrap_or(false) {
            count();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if IN_SERVER.try_with(Cell::get).unwrap_or(false) {
            count();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn in_server(on: bool) {
    IN_SERVER.with(|c| c.set(on));
}

#[test]
fn serving_allocates_nothing() {
    // The counter sees an allocation made while the flag is up (so this test can fail).
    in_server(true);
    let probe = std::hint::black_box(vec![1u8; 16]);
    in_server(false);
    drop(probe);
    assert_eq!(take_count(), 1);

    let mut sim: Sim = Sim::new();
    sim.around_server = Some(in_server);
    let files = image_files();
    let mut requests = 0;
    // Every file, then 10 at once, then errors and keep-alive pipelining.
    for (path, bytes) in &files {
        assert_eq!(&sim.get(path).body, bytes);
        requests += 1;
    }
    sim.conns.clear();
    for (path, _) in files.iter().cycle().take(10) {
        sim.open(
            format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes(),
            Opts::default(),
        );
        requests += 1;
    }
    assert!(sim.run(Duration::from_secs(60)));
    for req in [
        &b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /text/text.htm\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nRange: bytes=10-20\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        assert!(!sim.exchange(req).is_empty());
        requests += 1;
    }
    assert!(Response::parse(
        &sim.exchange(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    )
    .is_some());
    // Chat: posts, and a reply larger than the send buffer, streamed from the ring.
    // 35 x 5 characters that JSON escapes (<, \, ", &, >): 770 bytes of JSON, under MAX_JSON.
    let text = "%3C%5C%22%26%3E".repeat(35);
    for i in 0..64 {
        let req = common::chat_post(&format!("name=n{i}&text={text}"));
        assert_eq!(Response::parse(&sim.exchange(&req)).unwrap().status, 201);
        requests += 1;
    }
    let r = sim.get("/chat?since=0");
    assert!(r.status == 200 && r.body.len() > smolhttpd::config::TX_BUFFER);
    let n = take_count();
    assert!(sim.server.stats().requests as usize > requests);
    assert_eq!(n, 0, "the server allocated {n} times while serving");
}

#[test]
fn custom_handlers_allocate_nothing() {
    let mut sim = common::handlers::sim();
    sim.around_server = Some(in_server);
    let body = vec![b'x'; 900];
    let post = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\nConnection: close\r\n\r\n{}",
        String::from_utf8(body.clone()).unwrap()
    );
    for _ in 0..3 {
        assert_eq!(sim.get("/api/sensor").status, 200);
        assert_eq!(sim.get("/big").body.len(), 75_000);
        assert_eq!(sim.get("/doc").status, 200);
        assert_eq!(sim.get("/flaky").status, 500);
        let r = Response::parse(&sim.exchange(post.as_bytes())).unwrap();
        assert_eq!(r.body, body);
        assert_eq!(sim.get("/index.html").status, 200);
    }
    let n = take_count();
    assert_eq!(
        n, 0,
        "the server or a handler allocated {n} times while serving"
    );
}

#[test]
fn open_streams_allocate_nothing() {
    let mut sim: Sim = Sim::new();
    sim.around_server = Some(in_server);
    let listeners: Vec<usize> = (0..3)
        .map(|_| {
            sim.open(
                b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
                Opts::default(),
            )
        })
        .collect();
    sim.advance(Duration::from_millis(100));
    for i in 0..10 {
        let req = common::chat_post(&format!("name=n&text=event{i}"));
        sim.open(&req, Opts::like_curl());
        sim.advance(Duration::from_millis(50));
    }
    // A heartbeat too.
    sim.advance(Duration::from_secs(16));
    for &l in &listeners {
        let text = String::from_utf8_lossy(&sim.conns[l].received).to_string();
        assert!(
            text.contains("id: 10\n") && text.contains("event: ping\ndata: {}\n\n"),
            "{text}"
        );
    }
    let n = take_count();
    assert_eq!(n, 0, "the server allocated {n} times with streams open");
}

#[test]
fn open_websockets_allocate_nothing() {
    use common::ws::{self, frame, text, upgrade};
    let (mut sim, _) = common::handlers::ws_sim(smolhttpd::Config::new());
    sim.around_server = Some(in_server);
    // Three chat sockets, two echo sockets, and an event stream beside them.
    let chat: Vec<usize> = (0..3)
        .map(|_| sim.open(&upgrade("/chat/ws", ""), Opts::default()))
        .collect();
    let echo: Vec<usize> = (0..2)
        .map(|_| sim.open(&upgrade("/ws/echo", ""), Opts::default()))
        .collect();
    let events = sim.open(
        b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts::default(),
    );
    sim.advance(Duration::from_millis(100));
    let mask = Some([9, 8, 7, 6]);
    for i in 0..20 {
        sim.send(
            chat[i % 3],
            &text(&format!(r#"{{"name":"n","text":"m{i}"}}"#)),
        );
        sim.send(echo[i % 2], &frame(false, ws::TEXT, b"frag", mask));
        sim.send(echo[i % 2], &frame(true, ws::PING, b"p", mask));
        sim.send(echo[i % 2], &frame(true, ws::CONT, b"ment", mask));
        sim.send(
            echo[i % 2],
            &frame(true, ws::BINARY, &[i as u8; 1500], mask),
        );
        sim.advance(Duration::from_millis(20));
    }
    sim.send(chat[0], &text("not json"));
    // A heartbeat's ping too, then a close.
    sim.advance(Duration::from_secs(16));
    sim.send(echo[0], &ws::close(1000));
    sim.advance(Duration::from_millis(100));
    for &c in &chat {
        let f = ws::frames_after_head(&sim.conns[c].received);
        assert_eq!(
            f.iter().filter(|f| f.1 == ws::TEXT).count(),
            20 + usize::from(c == chat[0])
        );
        assert_eq!(f.last().unwrap().1, ws::PING);
    }
    let f = ws::frames_after_head(&sim.conns[echo[0]].received);
    assert_eq!(f.iter().filter(|f| f.2 == b"fragment").count(), 10);
    assert_eq!(f.last().unwrap().1, ws::CLOSE);
    assert!(String::from_utf8_lossy(&sim.conns[events].received).contains("id: 20\n"));
    let n = take_count();
    assert_eq!(n, 0, "the server allocated {n} times with WebSockets open");
}
